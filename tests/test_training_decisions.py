"""Choices made on validation: logit biases that keep melanoma sensitivity at the floor, the
eight dihedral views, the circle test that tells a lesion reader from an equipment reader, and the
bar a teacher must clear before a student learns from it, and the one a student must clear to ship."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from contract.classes import CODES
from handler.preprocessing import dihedral_views
from training.decisions import (
    beats,
    bias_objective,
    choose_logit_bias,
    coordinate_ascent,
    flag_specificity,
    operating_point_figures,
)
from training.engine import predict
from training.mixed_precision import Precision
from training.presets import ImageBatches
from training.report import val_figures
from training.shortcuts import (
    AS_THEY_ARE,
    CHANGES,
    CIRCLE,
    add_circle,
    circle_shift,
    circle_table,
    format_table,
    mel_calls,
)
from training.train import TEACHER_MARGIN, reason_not_to_ship, require_teacher_worth_it

MEL, NV, BKL = (CODES.index(code) for code in ("MEL", "NV", "BKL"))
FP32_CPU = Precision("fp32", torch.device("cpu"))


def too_many_nevi(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation (logits, labels) of a model that calls too much nevus: 100 melanomas, 300 nevi and
    100 benign keratoses, melanoma sensitivity well below 0.8."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([MEL] * 100 + [NV] * 300 + [BKL] * 100)
    logits = torch.randn(500, len(CODES), generator=generator)
    logits[torch.arange(500), labels] += 2.0
    logits[:, NV] += 1.5
    return logits, labels


def test_biases_raise_melanoma_sensitivity_to_the_floor() -> None:
    logits, labels = too_many_nevi(seed=0)
    before = (logits[:100].argmax(1) == MEL).float().mean()
    assert before < 0.6

    bias, figures = choose_logit_bias(logits, labels, mel_floor=0.8)

    after = ((logits + torch.tensor(bias, dtype=torch.float32)).argmax(1)[:100] == MEL).float().mean()
    assert after >= 0.8 and abs(figures["after"]["mel_sensitivity"] - float(after)) < 1e-6
    assert figures["after"]["balanced_accuracy"] > figures["before"]["balanced_accuracy"]
    assert abs(bias.mean()) < 1e-9


def test_the_biases_also_weigh_the_referral_flags_false_alarms() -> None:
    logits, labels = too_many_nevi(seed=2)

    bma_bias, bma_only = choose_logit_bias(logits, labels, mel_floor=0.8, referral_weight=0.0)
    _, weighed = choose_logit_bias(logits, labels, mel_floor=0.8, referral_weight=0.5)

    assert weighed["after"]["mel_sensitivity"] >= 0.8
    assert weighed["after"]["referral_specificity"] >= weighed["before"]["referral_specificity"]
    bma_only_flag = flag_specificity(labels.numpy(), (logits + torch.tensor(bma_bias, dtype=torch.float32)).numpy())
    assert weighed["after"]["referral_specificity"] > bma_only_flag == bma_only["after"]["referral_specificity"]


def eight_classes(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation (logits, labels) of a weak model over all eight classes, with nevi the largest."""
    generator = torch.Generator().manual_seed(seed)
    counts = [40, 60, 120, 15, 100, 400, 30, 15]
    labels = torch.cat([torch.full((count,), index) for index, count in enumerate(counts)])
    logits = 1.5 * torch.randn(len(labels), len(CODES), generator=generator)
    logits[torch.arange(len(labels)), labels] += 1.5
    logits[:, NV] += 1.0
    return logits, labels


def test_the_biases_search_past_where_one_ascent_from_no_bias_stops() -> None:
    gains = []
    for seed in range(3):
        logits, labels = eight_classes(seed)
        objective = bias_objective(logits.numpy(), labels.numpy(), mel_floor=0.8)
        from_no_bias = coordinate_ascent(objective, np.zeros(len(CODES)))

        bias, figures = choose_logit_bias(logits, labels, mel_floor=0.8)

        assert figures["after"]["mel_sensitivity"] >= 0.8
        gains.append(objective(bias) - objective(from_no_bias))
    assert min(gains) >= 0 and max(gains) > 0.005


def test_releases_are_compared_at_the_operating_point_they_are_served_at() -> None:
    logits, labels = too_many_nevi(seed=1)
    sources = ["ham10000"] * 250 + ["BCN20000"] * 250
    raw = val_figures(logits, labels, sources)
    point = operating_point_figures(logits, labels, sources, mel_floor=0.8)
    # All melanomas are HAM10000's here: the raw argmax misses them, the operating point holds the floor.
    assert raw["mel_sensitivity_by_source"]["ham10000"] < 0.6
    assert point["mel_sensitivity_by_source"]["ham10000"] >= 0.8
    assert point["balanced_accuracy"] > raw["balanced_accuracy"]
    # A release whose biases are folded in already barely moves.
    bias, _ = choose_logit_bias(logits, labels, mel_floor=0.8)
    served = logits + torch.tensor(bias, dtype=torch.float32)
    refitted = operating_point_figures(served, labels, sources, 0.8)
    assert refitted["mel_sensitivity_by_source"]["ham10000"] >= 0.8
    assert abs(refitted["balanced_accuracy"] - val_figures(served, labels, sources)["balanced_accuracy"]) < 0.02
    # Each point carries the referral flag's specificity at the sensitivity it is chosen for.
    assert 0 < point["referral_specificity"] < 1 and 0 < refitted["referral_specificity"] < 1


def test_the_dihedral_views_are_eight_distinct_turns_and_flips() -> None:
    image = torch.arange(12.0).view(1, 1, 3, 4)
    views = dihedral_views(image)
    assert len(views) == 8
    assert len({tuple(view.flatten().tolist()) for view in views}) == 8
    assert {tuple(view.shape[-2:]) for view in views} == {(3, 4), (4, 3)}


class DarkCornersMeanMelanoma(torch.nn.Module):
    """Calls MEL when the frame's corners are dark: an equipment reader."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        corners = images[..., :4, :4].mean(dim=(1, 2, 3))
        logits = torch.zeros(len(images), len(CODES))
        logits[:, MEL] = -corners
        return logits


class DarkCentreMeansMelanoma(torch.nn.Module):
    """Calls MEL when the centre is dark: a (crude) lesion reader."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        centre = images[..., height // 3:2 * height // 3, width // 3:2 * width // 3].mean(dim=(1, 2, 3))
        logits = torch.zeros(len(images), len(CODES))
        logits[:, MEL] = -centre
        return logits


def test_the_circle_test_catches_a_model_that_reads_the_equipment() -> None:
    frames = torch.full((6, 3, 48, 64), 170, dtype=torch.uint8)
    frames[:3, :, 16:32, 21:43] = 40  # three melanoma-like dark lesions, three faint ones
    frames[3:, :, 16:32, 21:43] = 150
    labels = torch.tensor([MEL, MEL, MEL, NV, NV, BKL])
    assert add_circle(frames)[0, :, 0, 0].max() < 5 and add_circle(frames)[0, 0, 24, 32] == 40

    def table(model: torch.nn.Module) -> dict:
        return mel_calls(model, frames, labels, FP32_CPU, False, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

    reader, shortcut = table(DarkCentreMeansMelanoma()), table(DarkCornersMeanMelanoma())
    assert set(reader) == set(CHANGES) and circle_shift(reader) == 0
    assert circle_shift(shortcut) == 1.0
    assert "| a black circular vignette added |" in format_table(shortcut)
    with_bma = format_table(shortcut, dict.fromkeys(shortcut, 0.5))
    assert "| BMA, all classes |" in with_bma and with_bma.count("| 0.500 |") == len(CHANGES)
    assert np.isclose(reader["as they are"]["MEL"], 1.0)

    # From answers already made on the frames, and with a class the table does not show among them.
    others = torch.cat([frames, frames[:1]]), torch.cat([labels, torch.tensor([CODES.index("DF")])])
    for model in (DarkCentreMeansMelanoma(), DarkCornersMeanMelanoma()):
        plain, _ = predict(model, ImageBatches(others[0], others[1], 4), FP32_CPU, False,
                           mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        assert circle_table(model, *others, plain, FP32_CPU, False, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)) == {
            change: shares for change, shares in table(model).items() if change in (AS_THEY_ARE, CIRCLE)}


SHIPPED = {"balanced_accuracy": 0.55, "mel_sensitivity_by_source": {"ham10000": 0.28}, "referral_specificity": 0.40}


def test_beating_the_shipped_release_takes_bma_as_many_ham_melanomas_and_as_specific_a_flag() -> None:
    def teacher(bma: float, ham_mel: float, referral_specificity: float = 0.40) -> dict:
        return {"balanced_accuracy": bma, "mel_sensitivity_by_source": {"ham10000": ham_mel},
                "referral_specificity": referral_specificity}

    assert beats(teacher(0.57, 0.38), SHIPPED, TEACHER_MARGIN)
    assert not beats(teacher(0.555, 0.38), SHIPPED, TEACHER_MARGIN)  # better, not clearly
    assert beats(teacher(0.555, 0.38), SHIPPED)  # enough for a student to ship
    assert not beats(teacher(0.60, 0.25), SHIPPED, TEACHER_MARGIN)  # fewer melanomas found
    assert beats(teacher(0.60, 0.28), SHIPPED, TEACHER_MARGIN)  # as many melanomas found
    assert not beats(teacher(0.60, 0.38, 0.31), SHIPPED)  # more false alarms at the same sensitivity
    assert beats(teacher(0.30, 0.0, 0.0), None, TEACHER_MARGIN)  # nothing shipped yet


def test_a_run_stops_before_distilling_from_a_teacher_no_better_than_the_release() -> None:
    weak = {"arch": "efficientnet-lite0", "val_balanced_accuracy": 0.60,
            "operating_point": {"balanced_accuracy": 0.555, "mel_sensitivity_by_source": {"ham10000": 0.38},
                                "referral_specificity": 0.45}}
    with pytest.raises(SystemExit, match="does not beat the shipped release"):
        require_teacher_worth_it(weak, SHIPPED, argparse.Namespace(any_teacher=False, output="run"))
    require_teacher_worth_it(weak, SHIPPED, argparse.Namespace(any_teacher=True, output="run"))


def test_a_student_ships_only_if_it_beats_the_release_and_an_added_circle_hardly_moves_its_calls() -> None:
    def student(bma: float, shift: float, referral_specificity: float = 0.41) -> dict:
        return {"operating_point": {"balanced_accuracy": bma, "mel_sensitivity_by_source": {"ham10000": 0.5},
                                    "referral_specificity": referral_specificity},
                "val_circle_shift": shift, "val_mel_calls_with_circle": {}}

    assert reason_not_to_ship(student(0.56, 0.03), SHIPPED) is None
    assert "validation split" in reason_not_to_ship(student(0.54, 0.03), SHIPPED)
    assert "validation split" in reason_not_to_ship(student(0.56, 0.03, 0.31), SHIPPED)
    assert "an added circle moves" in reason_not_to_ship(student(0.56, 0.20), SHIPPED)
