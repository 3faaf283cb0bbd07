"""Which precision a release is served at: the choice ``make precision`` measured, the int8
calibration beside it, and the record an archive carries of what it runs.

Both files beside the weights name the weights' SHA-256, so a new release is never served with an
old release's choice or calibration: without a matching choice it is served in fp32.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from handler.gate import file_sha256
from handler.precision import CALIBRATION_FILE, PRECISIONS

CHOICE_FILE = "skin_precision.json"
# Inside an archive: the precision it runs, where that came from, and the choice's figures.
SERVED_FILE = "skin_served_precision.json"


def choice_path(weights: Path) -> Path:
    return Path(weights).with_name(CHOICE_FILE)


def calibration_path(weights: Path) -> Path:
    return Path(weights).with_name(CALIBRATION_FILE)


def save_calibration_for(calibration: dict[str, torch.Tensor], weights: Path, images: int) -> str:
    """Write the int8 calibration of ``weights`` beside them; returns the weights' SHA-256."""
    sha = file_sha256(weights)
    torch.save({"weights_sha256": sha, "images": images, "activations": calibration},
               calibration_path(weights))
    return sha


def load_calibration(path: Path, weights_sha256: str) -> dict[str, torch.Tensor]:
    """The activations' quantisation parameters at ``path`` (handler.precision.calibrate), checked
    to be calibrated on exactly these weights."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: int8 needs the release's calibration "
                                "(make precision)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["weights_sha256"] != weights_sha256:
        raise ValueError(f"{path} was calibrated on other weights: rerun make precision")
    return state["activations"]


def release_choice(weights: Path) -> dict | None:
    """The choice measured for exactly these weights, or None (none made, or made for others)."""
    path = choice_path(weights)
    if not path.is_file():
        return None
    choice = json.loads(path.read_text())
    return choice if choice.get("weights_sha256") == file_sha256(weights) else None


def served_record(weights: Path, requested: str | None = None) -> dict:
    """What an archive of ``weights`` runs: ``requested`` when given, else the release's measured
    choice, else fp32; with the choice's figures when there are any."""
    choice = release_choice(weights)
    if requested is not None and requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    if requested:
        precision, source = requested, "requested (PRECISION=)"
    elif choice:
        precision, source = choice["chosen"], f"measured ({CHOICE_FILE})"
    else:
        precision, source = "fp32", f"default (no {CHOICE_FILE} for these weights)"
    return {"precision": precision, "source": source, "choice": choice}


def read_served(model_dir: Path) -> dict:
    """What the unpacked archive in ``model_dir`` runs; archives built before precisions ran fp32."""
    path = Path(model_dir) / SERVED_FILE
    if not path.is_file():
        return {"precision": "fp32", "source": f"default (the archive has no {SERVED_FILE})",
                "choice": None}
    return json.loads(path.read_text())


def served_gate_threshold(served: dict) -> float | None:
    """The gate's distance threshold that ``make precision`` chose for the served precision's own
    features (quantisation lengthens distances), or None to keep the gate file's (fp32's)."""
    choice = served.get("choice") or {}
    return choice.get("candidates", {}).get(served["precision"], {}).get("gate_max_distance")
