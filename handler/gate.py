"""The gate: whether a photo is a usable dermoscopy image, decided before anyone reads a diagnosis.

Checks run in this order and the first that fails names the refusal: the photo's size, its exposure
(mean luminance of the frame), its focus (variance of the Laplacian of the frame) and whether the
model's own penultimate features look like those of the training lesions (the Mahalanobis distance
to the nearest class mean under one shared covariance, Lee et al. 2018). Every threshold comes from
the release's gate file (``skin_gate.pt`` beside the weights), which ``python -m training.gate``
fits for that release, so each release is gated by statistics of its own features and frame.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models.resnet import ResNet

from handler.refusals import ACCEPTED, ACCEPTED_DETAIL, DETAILS

GATE_FILE = "skin_gate.pt"
GATE_FORMAT = 1
# ITU-R BT.601 luma weights.
LUMA = (0.299, 0.587, 0.114)
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str  # one of handler.refusals.REASONS
    detail: str
    score: float | None  # the measurement that decided it, None when none could be made
    threshold: float | None

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "detail": self.detail,
                "score": self.score, "threshold": self.threshold}


def gate_error() -> Verdict:
    return Verdict(False, "gate_error", DETAILS["gate_error"], None, None)


def luminance(frame: torch.Tensor) -> float:
    """Mean luma of a uint8 CHW RGB frame, on 0-1."""
    weights = torch.tensor(LUMA).view(3, 1, 1)
    return float((frame.float() * weights).sum(0).mean() / 255)


def sharpness(frame: torch.Tensor) -> float:
    """Variance of the Laplacian of the frame's luma (0-255): low when blurred or featureless."""
    luma = (frame.float() * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True)
    return float(F.conv2d(luma.unsqueeze(0), LAPLACIAN).var())


def penultimate(model: ResNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) in one pass: the pooled 512 features that feed ResNet's last layer."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    features = torch.flatten(model.avgpool(x), 1)
    return features, model.fc(features)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Gate:
    """One release's gate: class means and shared precision of its features, and the thresholds."""

    means: torch.Tensor  # (classes, features)
    precision: torch.Tensor  # (features, features), inverse of the shared covariance
    min_side: int
    min_luminance: float
    max_luminance: float
    min_sharpness: float
    max_distance: float

    def distance(self, feature: torch.Tensor) -> float:
        """Squared Mahalanobis distance of one feature vector to the nearest class mean."""
        centred = feature.float().unsqueeze(0) - self.means
        return float(((centred @ self.precision) * centred).sum(1).min())

    def check(self, frame: torch.Tensor, size: tuple[int, int], feature: torch.Tensor) -> Verdict:
        """The verdict on one photo: ``frame`` is the uint8 CHW frame the network saw, ``size`` the
        decoded photo's (width, height), ``feature`` its penultimate features."""
        short_side = min(size)
        if short_side < self.min_side:
            return self._refuse("too_small", short_side, self.min_side)
        light = luminance(frame)
        if light < self.min_luminance:
            return self._refuse("too_dark", light, self.min_luminance)
        if light > self.max_luminance:
            return self._refuse("too_bright", light, self.max_luminance)
        focus = sharpness(frame)
        if focus < self.min_sharpness:
            return self._refuse("blurred", focus, self.min_sharpness)
        distance = self.distance(feature)
        if not math.isfinite(distance) or distance > self.max_distance:
            return self._refuse("not_dermoscopy", distance, self.max_distance)
        return Verdict(True, ACCEPTED, ACCEPTED_DETAIL, distance, self.max_distance)

    @staticmethod
    def _refuse(reason: str, score: float, threshold: float) -> Verdict:
        return Verdict(False, reason, DETAILS[reason], float(score), float(threshold))

    @classmethod
    def from_state(cls, state: dict) -> "Gate":
        thresholds = state["thresholds"]
        return cls(state["means"].float(), state["precision"].float(), int(thresholds["min_side"]),
                   float(thresholds["min_luminance"]), float(thresholds["max_luminance"]),
                   float(thresholds["min_sharpness"]), float(thresholds["max_distance"]))


def save_gate(state: dict, path: Path) -> Path:
    """Write a gate state (means, precision, thresholds, release) as ``torch.save`` of plain types."""
    if state.get("format") != GATE_FORMAT:
        raise ValueError(f"gate state format {state.get('format')} is not {GATE_FORMAT}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def load_gate_state(path: Path, weights: Path) -> dict:
    """The gate state at ``path``, checked to belong to exactly these weights: a gate fitted on
    another release's features would refuse or accept at random."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: build the release's gate with "
                                f"`python -m training.gate --weights {weights}` (make gate)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != GATE_FORMAT:
        raise ValueError(f"{path} has gate format {state.get('format')}, expected {GATE_FORMAT}")
    expected = state["release"]["weights_sha256"]
    if file_sha256(weights) != expected:
        raise ValueError(f"{path} was fitted for other weights than {weights}: rebuild it with "
                         f"`python -m training.gate --weights {weights}` (make gate)")
    return state


def load_gate(path: Path, weights: Path) -> Gate:
    return Gate.from_state(load_gate_state(path, weights))
