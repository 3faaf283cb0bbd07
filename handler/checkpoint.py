"""The shipped model release: fp16 weights plus a JSON metadata file, written by training and read
by the handler and the archive builder.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from contract.classes import CODES
from handler.model import SkinResNet34

WEIGHTS_FILE = "skin_resnet34.pt"
METADATA_FILE = "skin_resnet34.json"
# What scoring a release needs; serving also needs the referral threshold that every answer carries.
# Releases before 2.0 have no threshold, and training still compares against them.
MODEL_KEYS = ("name", "version", "arch", "classes", "input_size", "mean", "std", "temperature")
REQUIRED_KEYS = (*MODEL_KEYS, "referral")


def save_release(state_dict: dict[str, torch.Tensor], metadata: dict, directory: Path) -> Path:
    """Write ``skin_resnet34.pt`` (fp16) and ``skin_resnet34.json`` into ``directory``."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"release metadata lacks {missing}")
    directory.mkdir(parents=True, exist_ok=True)
    half = {key: value.half() if value.is_floating_point() else value
            for key, value in state_dict.items()}
    torch.save(half, directory / WEIGHTS_FILE)
    write_metadata(metadata, directory)
    return directory / WEIGHTS_FILE


def write_metadata(metadata: dict, directory: Path) -> Path:
    """Write ``skin_resnet34.json`` into ``directory``, beside weights already there."""
    path = directory / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_metadata(path: Path, required: tuple[str, ...] = REQUIRED_KEYS) -> dict:
    """Read release metadata, check that it has the ``required`` keys and that it was trained on
    today's class list."""
    metadata = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [key for key in required if key not in metadata]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    if tuple(metadata["classes"]) != CODES:
        raise ValueError(f"{path} was trained on classes {metadata['classes']}, "
                         f"but contract/classes.json lists {list(CODES)}")
    return metadata


def load_release(weights: Path, metadata_path: Path | None = None,
                 required: tuple[str, ...] = REQUIRED_KEYS) -> tuple[SkinResNet34, dict]:
    """The released model in eval mode (fp16 weights into float32 parameters) and its checked
    metadata, which sits beside the weights unless ``metadata_path`` says otherwise."""
    metadata = load_metadata(metadata_path or Path(weights).with_name(METADATA_FILE), required)
    model = SkinResNet34()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), metadata
