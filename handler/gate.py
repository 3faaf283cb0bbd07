"""The gate: whether a photo is a usable dermoscopy image, decided before anyone reads a diagnosis.

Checks run in this order and the first that fails names the refusal: the photo's size, its exposure
(mean luminance of the frame), its focus (variance of the Laplacian of the frame) and whether it
looks like the training lesions to a general-purpose network: the distance from its EfficientNet-
Lite0 ImageNet features (handler/lite.py) to the k-th nearest of a bank of training lesions' (Sun et
al. 2022). The task network cannot judge that, having seen nothing but dermoscopy; ImageNet features
place a dog, a page or a room far from every lesion, and the nearest-neighbour distance keeps the
lesions of every clinic and camera in the bank close, where one Gaussian around them all does not.

Every threshold and the bank come from the release's gate file (``skin_gate.pt`` beside the
weights), which ``python -m training.gate`` fits for that release; the ImageNet weights travel in
the archive beside it, and the gate file names their SHA-256.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from contract import answer
from contract.refusals import ACCEPTED, ACCEPTED_DETAIL, DETAILS
from handler.lite import LiteFeatures, load_lite_features
from handler.preprocessing import eval_transform, model_input
from imaging.framing import input_shape

GATE_FILE = "skin_gate.pt"
# The ImageNet weights of the gate's network, inside the archive.
GATE_NETWORK_FILE = "skin_gate_lite0.pth"
GATE_FORMAT = 2
# ITU-R BT.601 luma weights.
LUMA = (0.299, 0.587, 0.114)
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str  # one of contract.refusals.REASONS
    detail: str
    score: float | None  # the measurement that decided it, None when none could be made
    threshold: float | None

    def as_dict(self) -> dict:
        return answer.gate_verdict(self.accepted, self.reason, self.detail, self.score, self.threshold)


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class GateNetwork:
    """What the distance check looks at: the photo framed at the network's own small input (the gate
    must cost little beside the task network), colour-corrected, through EfficientNet-Lite0."""

    network: LiteFeatures
    input_size: tuple[int, int]
    colour_constancy: bool

    def frame(self, image: Image.Image) -> torch.Tensor:
        """The uint8 CHW frame of a decoded RGB photo that the network sees."""
        return eval_transform(image, self.input_size)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Features of a batch of frames (uint8 or float NCHW on 0-255)."""
        with torch.inference_mode():
            images = model_input(frames, self.colour_constancy)
            # Channels-last runs the depthwise convolutions about three times faster on a CPU.
            return self.network(images.contiguous(memory_format=torch.channels_last))

    @classmethod
    def from_state(cls, state: dict, weights: Path) -> GateNetwork:
        """The network a gate state was fitted with, from the ImageNet weights at ``weights``,
        checked to be exactly those: other weights give other features."""
        recorded = state["network"]
        if file_sha256(weights) != recorded["weights_sha256"]:
            raise ValueError(f"{weights} are not the ImageNet weights the gate was fitted with "
                             f"({recorded['name']}): rebuild the gate with make gate")
        return cls(load_lite_features(weights), input_shape(recorded["input_size"]),
                   bool(recorded["colour_constancy"]))


@dataclass(frozen=True)
class Gate:
    """One release's gate: the quality thresholds, and the bank of training lesions' features with
    the distance threshold."""

    bank: torch.Tensor  # (lesions, features): the training lesions' GateNetwork features
    k: int
    min_side: int
    min_luminance: float
    max_luminance: float
    min_sharpness: float
    max_distance: float

    def __post_init__(self) -> None:
        # The bank's squared lengths, once: every batch's distances need them.
        object.__setattr__(self, "_bank_squares", (self.bank * self.bank).sum(dim=1))

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Euclidean distance from each row of ``features`` to its k-th nearest lesion in the bank."""
        features = features.float()
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matrix product, half the CPU time of torch.cdist here.
        squares = ((features * features).sum(dim=1, keepdim=True) + self._bank_squares
                   - 2 * features @ self.bank.T)
        nearest = squares.topk(self.k, dim=1, largest=False).values[:, -1]
        return nearest.clamp(min=0).sqrt()

    def check(self, frame: torch.Tensor, size: tuple[int, int], distance: float) -> Verdict:
        """The verdict on one photo: ``frame`` is the uint8 CHW frame the task network saw, ``size``
        the decoded photo's (width, height), ``distance`` its ``distances`` entry."""
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
        if not math.isfinite(distance) or distance > self.max_distance:
            return self._refuse("not_dermoscopy", distance, self.max_distance)
        return Verdict(True, ACCEPTED, ACCEPTED_DETAIL, float(distance), self.max_distance)

    @staticmethod
    def _refuse(reason: str, score: float, threshold: float) -> Verdict:
        return Verdict(False, reason, DETAILS[reason], float(score), float(threshold))

    @classmethod
    def from_state(cls, state: dict) -> Gate:
        thresholds = state["thresholds"]
        return cls(state["bank"].float(), int(state["k"]), int(thresholds["min_side"]),
                   float(thresholds["min_luminance"]), float(thresholds["max_luminance"]),
                   float(thresholds["min_sharpness"]), float(thresholds["max_distance"]))


def save_gate(state: dict, path: Path) -> Path:
    """Write a gate state (bank, thresholds, network, release) as ``torch.save`` of plain types."""
    if state.get("format") != GATE_FORMAT:
        raise ValueError(f"gate state format {state.get('format')} is not {GATE_FORMAT}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def load_gate_state(path: Path, weights: Path) -> dict:
    """The gate state at ``path``, checked to belong to exactly these weights: its quality
    thresholds are measured on their frames, and its figures on their split."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: build the release's gate with "
                                f"`python -m training.gate --weights {weights}` (make gate)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != GATE_FORMAT:
        raise ValueError(f"{path} has gate format {state.get('format')}, expected {GATE_FORMAT}: "
                         f"rebuild it with `python -m training.gate --weights {weights}` (make gate)")
    expected = state["release"]["weights_sha256"]
    if file_sha256(weights) != expected:
        raise ValueError(f"{path} was fitted for other weights than {weights}: rebuild it with "
                         f"`python -m training.gate --weights {weights}` (make gate)")
    return state


def load_gate(path: Path, weights: Path, network_weights: Path) -> tuple[Gate, GateNetwork]:
    """A release's gate and its network, checked as a worker checks them."""
    state = load_gate_state(path, weights)
    return Gate.from_state(state), GateNetwork.from_state(state, network_weights)
