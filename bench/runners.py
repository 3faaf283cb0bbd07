"""The release at every precision, for the in-process limit: int8 with the release's own
calibration when ``make precision`` made one for these weights, else calibrated on the bench's
images (and labelled so)."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.inprocess import frame
from handler.gate import file_sha256
from handler.preprocessing import release_input, serves_dihedral_tta
from handler.runners import PRECISIONS, Runner, calibrate, runner
from handler.served_precision import calibration_path, load_calibration
from imaging.framing import input_shape


def precision_runners(model: torch.nn.Module, metadata: dict, weights: Path,
                      images: list[bytes]) -> tuple[dict[str, Runner], str]:
    """A runner per precision, and where int8's calibration came from."""
    size = input_shape(metadata["input_size"])
    try:
        calibration = load_calibration(calibration_path(weights), file_sha256(weights))
        source = f"the release's ({calibration_path(weights).name})"
    except (FileNotFoundError, ValueError):
        frames = torch.stack([frame(metadata, data) for data in images])
        calibration = calibrate(model, [release_input(frames, metadata)], size)
        source = f"the bench's {len(images)} images (the release has none for these weights)"
    dihedral = serves_dihedral_tta(metadata)
    return {name: runner(model, name, size, calibration, dihedral=dihedral) for name in PRECISIONS}, source
