"""How closely a student matches its teacher, on the stored training views and on validation.

    python -m training.mimicry --run RUN --student RUN/student_best.pt --image-size 96x128

A student that matches its teacher about as closely on validation as on the training views it was
distilled on, but not closely on either, falls short of fitting the teacher: more of the teacher
pays. One that matches it on the training views alone has memorised them. The printout also gives
each one's BMA against the labels of the same images: a student above its teacher there fits the
labels rather than the teacher.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import settings
from training.engine import predict
from training.evaluate import FP32_CPU
from training.metrics import balanced_accuracy
from training.models import TEACHERS, build_student, build_teacher
from training.presets import (
    BatchAugment,
    ImageBatches,
    decode_frames,
    evaluation_batches,
    stored_views,
    train_cache_shape,
)
from training.run_setup import add_finished_run_arguments, finished_run_split, image_size
from training.soft_targets import TARGETS_FILE
from training.teacher import teacher_weights


def mimicry(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 agreement, KL(teacher || student) at temperature 1, and each one's BMA on ``labels``."""
    kl = F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits, 1),
                  reduction="batchmean", log_target=True)
    return {"top1_agreement": float((student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean()),
            "kl_teacher_student": float(kl),
            "student_bma": balanced_accuracy(labels.numpy(), student_logits.argmax(1).numpy()),
            "teacher_bma": balanced_accuracy(labels.numpy(), teacher_logits.argmax(1).numpy())}


def training_views(targets: dict, images: torch.Tensor, labels: torch.Tensor, augment: BatchAugment,
                   count: int, seed: int) -> tuple[ImageBatches, torch.Tensor]:
    """``count`` stored (image, view) pairs drawn at random, rendered at ``augment``'s size, with
    the teacher's logits stored for each."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randint(len(images), (count,), generator=generator)
    view = torch.randint(targets["logits"].shape[1], (count,), generator=generator)
    frames = augment.render(images[chosen], stored_views(targets["params"], chosen, view))
    return ImageBatches(frames, labels[chosen], 64), targets["logits"][chosen, view].float()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True,
                        help=f"a training run's folder, with its {TARGETS_FILE} and fine-tuned teacher")
    parser.add_argument("--student", type=Path, required=True, help="a student's state dict")
    parser.add_argument("--image-size", type=image_size, default=settings.IMAGE_SIZE, help="the student's input")
    parser.add_argument("--teacher-size", type=image_size, default=settings.TEACHER_SIZE)
    parser.add_argument("--teacher-arch", choices=sorted(TEACHERS), default="efficientnet-lite0")
    parser.add_argument("--views", type=int, default=1536, help="training views compared")
    add_finished_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    samples, split = finished_run_split(args)
    student = build_student(args.student)
    teacher = build_teacher(args.teacher_arch)
    teacher.load_state_dict(torch.load(teacher_weights(args.run), map_location="cpu", weights_only=True))

    augment = BatchAugment(args.image_size, seed=args.seed)
    train_images = decode_frames([samples[i].path for i in split.train], train_cache_shape(args.image_size),
                                 desc="decode train")
    views, stored = training_views(torch.load(args.run / TARGETS_FILE, weights_only=True), train_images,
                                   torch.tensor([samples[i].label for i in split.train]), augment,
                                   args.views, args.seed)
    student_logits, labels = predict(student, views, FP32_CPU, args.colour_constancy)
    figures = {"training views": mimicry(student_logits, stored, labels)}

    student_logits, labels = predict(student, evaluation_batches(samples, split.val, args.image_size, 64),
                                     FP32_CPU, args.colour_constancy)
    teacher_logits, _ = predict(teacher, evaluation_batches(samples, split.val, args.teacher_size, 64),
                                FP32_CPU, args.colour_constancy)
    figures["validation"] = mimicry(student_logits, teacher_logits, labels)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
