"""What every training command sets up the same way: the default data, the input-size argument,
seeds, and moving a model to its device and memory layout."""
from __future__ import annotations

import random
import subprocess

import numpy as np
import torch

from imaging.framing import input_shape
from training.mixed_precision import Precision


def image_size(text: str) -> tuple[int, int]:
    """``96x128`` (height x width) or ``112`` (a square)."""
    height, _, width = text.partition("x")
    return input_shape((int(height), int(width or height)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def to_device(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    model = model.to(precision.device)
    return model.to(memory_format=torch.channels_last) if precision.channels_last else model
