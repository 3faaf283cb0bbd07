"""Which precision a release is served at: the choice ``make precision`` measured, the int8
calibration beside it, and the record an archive carries of what it runs.

Both files beside the weights name the weights' SHA-256, so a new release is never served with an
old release's choice or calibration: without a matching choice it is served in fp32. A choice also
holds only on the kind of CPU it was measured on (the flags in ``handler.cpus.CPU_FLAGS``): without
VNNI, int8's 8-bit activations saturate the CPU's 16-bit sums, and without AVX-512 bf16 runs at a
sixth of fp32's speed. On an AVX2-only EPYC the shipped int8 choice lost 0.006 of balanced accuracy
and its gate refused 3% more test lesions; so elsewhere the release is served in fp32 until
``make precision`` has measured that machine.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from handler.cpus import cpu_info
from handler.gate import file_sha256
from handler.runners import CALIBRATION_FILE, PRECISIONS

CHOICE_FILE = "skin_precision.json"
# Inside an archive: the precision it runs, where that came from, and the choice's figures.
SERVED_FILE = "skin_served_precision.json"
MEASURED = f"measured ({CHOICE_FILE})"


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
    """The activations' quantisation parameters at ``path`` (handler.runners.calibrate), checked
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


def measured_elsewhere(choice: dict) -> str | None:
    """None where ``choice`` was measured on this kind of CPU; elsewhere the source of the fp32
    record that replaces it."""
    measured, here = choice.get("cpu", {}).get("flags"), cpu_info()["flags"]
    if measured == here:
        return None

    def named(flags: list[str] | None) -> str:
        return ", ".join(flags or []) or "none of them"
    return (f"default ({CHOICE_FILE} chose {choice['chosen']} on a CPU with {named(measured)}; "
            f"this one has {named(here)}: run make precision on this machine)")


def served_record(weights: Path, requested: str | None = None) -> dict:
    """What an archive of ``weights`` runs: ``requested`` when given, else the release's measured
    choice when it was measured on this kind of CPU, else fp32; with the choice's figures when
    there are any."""
    choice = release_choice(weights)
    if requested is not None and requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    if requested:
        precision, source = requested, "requested (PRECISION=)"
    elif choice and (elsewhere := measured_elsewhere(choice)):
        precision, source = "fp32", elsewhere
    elif choice:
        precision, source = choice["chosen"], MEASURED
    else:
        precision, source = "fp32", f"default (no {CHOICE_FILE} for these weights)"
    return {"precision": precision, "source": source, "choice": choice}


def read_served(model_dir: Path) -> dict:
    """What the unpacked archive in ``model_dir`` runs on this CPU. Archives built before precisions
    ran fp32; an archive built on another kind of CPU (a container image) runs its measured choice
    only where that choice holds."""
    path = Path(model_dir) / SERVED_FILE
    if not path.is_file():
        return {"precision": "fp32", "source": f"default (the archive has no {SERVED_FILE})",
                "choice": None}
    served = json.loads(path.read_text())
    if served["source"] == MEASURED and (elsewhere := measured_elsewhere(served["choice"])):
        return served | {"precision": "fp32", "source": elsewhere}
    return served
