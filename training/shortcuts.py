"""Whether a release reads the class off the equipment instead of the lesion: the share of lesions
called melanoma, and the BMA, for the same images as they are and with one thing changed at a time
(a dermatoscope's black circle added, degraded to 84x63 and back, the lesion looking larger or
smaller). A circle on every image is what a phone's clip-on dermatoscope shows.

A model that learned "black circle, so BCN20000, so melanoma" calls many more nevi melanoma once a
circle is drawn round them; one that reads the lesion changes its calls little.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from contract.classes import CODES
from handler.preprocessing import MEAN, STD
from training.engine import predict
from training.mixed_precision import Precision
from training.presets import ImageBatches

MEL = CODES.index("MEL")
CLASSES_SHOWN = ("MEL", "NV", "BKL")
# The most an added circle may move the share of any shown class called MEL, for a release from 3.0 on.
ALLOWED_CIRCLE_SHIFT = 0.05


def add_circle(frames: torch.Tensor, radius: float = 0.8, edge: float = 0.04) -> torch.Tensor:
    """A contact dermatoscope's black circular vignette, centred, of ``radius`` times the frame's
    half-diagonal, with a soft edge ``edge`` times the radius wide."""
    height, width = frames.shape[-2:]
    ys = torch.linspace(-height / 2, height / 2, height).view(height, 1)
    xs = torch.linspace(-width / 2, width / 2, width).view(1, width)
    size = radius * math.hypot(width, height) / 2
    outside = torch.sigmoid(((xs ** 2 + ys ** 2).sqrt() - size) / (edge * size))
    return frames.float() * (1 - outside)


def degrade(frames: torch.Tensor, size: tuple[int, int] = (63, 84)) -> torch.Tensor:
    """Down to ``size`` (the other collections' 84 px) and back up."""
    small = F.interpolate(frames.float(), size=size, mode="area")
    return F.interpolate(small, size=frames.shape[-2:], mode="bilinear", align_corners=False)


def zoom(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """The frame's centre enlarged ``factor`` times (above 1), or the frame shrunk inside a margin of
    its own edge colour (below 1)."""
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(len(frames), 2, 3), list(frames.shape), align_corners=False)
    return F.grid_sample(frames.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


AS_THEY_ARE, CIRCLE = "as they are", "a black circular vignette added"
CHANGES = {
    AS_THEY_ARE: lambda frames: frames.float(),
    CIRCLE: add_circle,
    "degraded to 84x63 and back": degrade,
    "the central 60% enlarged (1.67x)": lambda frames: zoom(frames, 1 / 0.6),
    "shrunk to 0.67x inside its border": lambda frames: zoom(frames, 0.67),
}


def answers_by_change(model: torch.nn.Module, frames: torch.Tensor, labels: torch.Tensor, precision: Precision,
                      colour_constancy: bool, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD,
                      dihedral: bool = False, changes: tuple[str, ...] = tuple(CHANGES),
                      plain: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The model's logits on ``frames`` with each of ``changes`` made (averaging the eight dihedral
    views where the release answers so); ``plain``, its answers on ``frames`` as they are where
    already made, stands for that change instead of predicting them again."""
    return {change: plain if change == AS_THEY_ARE and plain is not None else
            predict(model, ImageBatches(CHANGES[change](frames), labels, 64), precision, colour_constancy,
                    dihedral, mean=mean, std=std)[0]
            for change in changes}


def mel_calls(model: torch.nn.Module, frames: torch.Tensor, labels: torch.Tensor, precision: Precision,
              colour_constancy: bool, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD,
              dihedral: bool = False, changes: tuple[str, ...] = tuple(CHANGES)) -> dict[str, dict]:
    """For each of ``changes``, the share of each shown class's images that the model calls MEL."""
    answers = answers_by_change(model, frames, labels, precision, colour_constancy, mean, std, dihedral, changes)
    return {change: mel_shares(logits, labels) for change, logits in answers.items()}


def mel_shares(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The share of each shown class's images that ``logits`` call MEL."""
    called = logits.argmax(1) == MEL
    return {code: float(called[labels == CODES.index(code)].float().mean())
            for code in CLASSES_SHOWN if (labels == CODES.index(code)).any()}


def circle_table(model: torch.nn.Module, frames: torch.Tensor, labels: torch.Tensor, plain_logits: torch.Tensor,
                 precision: Precision, colour_constancy: bool, mean: tuple[float, ...] = MEAN,
                 std: tuple[float, ...] = STD, dihedral: bool = False) -> dict[str, dict]:
    """``mel_calls`` as they are and with a circle added, where ``plain_logits`` are the model's
    answers on ``frames`` already: only the shown classes' images are predicted again, circled."""
    shown = torch.isin(labels, torch.tensor([CODES.index(code) for code in CLASSES_SHOWN]))
    return {AS_THEY_ARE: mel_shares(plain_logits, labels)} | mel_calls(
        model, frames[shown], labels[shown], precision, colour_constancy, mean, std, dihedral, changes=(CIRCLE,))


def circle_shift(table: dict[str, dict]) -> float:
    """The largest change, over the shown classes, in the share called MEL once a circle is added."""
    plain, circled = table[AS_THEY_ARE], table[CIRCLE]
    return max(abs(circled[code] - plain[code]) for code in plain)


def format_table(table: dict[str, dict], balanced_accuracy: dict[str, float] | None = None) -> str:
    """The MEL calls per change as a Markdown table, with each change's BMA over all classes where given."""
    codes = list(next(iter(table.values())))
    extra = balanced_accuracy is not None
    lines = ["| the same images | " + " | ".join(f"{code} called MEL" for code in codes)
             + (" | BMA, all classes" if extra else "") + " |",
             "|---|" + "---:|" * (len(codes) + extra)]
    lines += [f"| {change} | " + " | ".join(f"{shares[code]:.2f}" for code in codes)
              + (f" | {balanced_accuracy[change]:.3f}" if extra else "") + " |"
              for change, shares in table.items()]
    return "\n".join(lines)
