"""The student-against-teacher figures: agreement and divergence read as they claim, and a compared
training view carries the teacher's logits stored for exactly that image and view."""
from __future__ import annotations

import torch

from contract.classes import NUM_CLASSES
from training.mimicry import mimicry, training_views
from training.presets import BatchAugment, stored_views
from training.soft_targets import view_parameters


def test_a_student_that_is_its_teacher_agrees_fully_and_diverges_not_at_all() -> None:
    labels = torch.arange(NUM_CLASSES).repeat(4)
    teacher = torch.nn.functional.one_hot(labels, NUM_CLASSES).float() * 5
    figures = mimicry(teacher.clone(), teacher, labels)
    assert figures["top1_agreement"] == 1.0 and abs(figures["kl_teacher_student"]) < 1e-6
    assert figures["student_bma"] == figures["teacher_bma"] == 1.0


def test_a_student_that_fits_the_labels_instead_scores_above_its_teacher_and_agrees_less() -> None:
    labels = torch.arange(NUM_CLASSES).repeat(4)
    student = torch.nn.functional.one_hot(labels, NUM_CLASSES).float() * 5
    teacher = torch.nn.functional.one_hot((labels + 1) % NUM_CLASSES, NUM_CLASSES).float() * 5
    teacher[::2] = student[::2]  # the teacher is right on half of the images
    figures = mimicry(student, teacher, labels)
    assert figures["top1_agreement"] == 0.5 and figures["kl_teacher_student"] > 1
    assert figures["student_bma"] == 1.0 and figures["teacher_bma"] == 0.5


def test_each_compared_training_view_brings_the_logits_stored_for_its_image_and_view() -> None:
    images, views = 5, 3
    augment = BatchAugment((12, 16))
    params = view_parameters(augment, images, views, seed=0)
    # The stored logits encode (image, view), so a mismatch would show.
    logits = torch.zeros(images, views, NUM_CLASSES)
    logits[..., 0] = torch.arange(images).view(images, 1).float()
    logits[..., 1] = torch.arange(views).view(1, views).float()
    frames = torch.randint(0, 255, (images, 3, 24, 32), dtype=torch.uint8)
    batches, stored = training_views({"params": params, "logits": logits}, frames, torch.arange(images),
                                     augment, count=20, seed=1)
    chosen, view = stored[:, 0].long(), stored[:, 1].long()
    assert torch.equal(batches.labels, chosen)
    expected = augment.render(frames[chosen], stored_views(params, chosen, view))
    assert torch.equal(batches.images, expected)
