"""The teacher's soft targets, computed once over K fixed augmented views of every training image.

A view is stored as the few numbers ``BatchAugment.sample`` draws (zoom, angle, circle, tint...),
not as pixels, so the student renders the very same view at its own resolution and its epochs never
pay for a teacher forward pass. Written in chunks, so a stopped run resumes where it was.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from contract.classes import NUM_CLASSES
from training.mixed_precision import Precision
from training.presets import BatchAugment, stored_views, to_model_input

TARGETS_FILE = "soft_targets.pt"


def view_parameters(augment: BatchAugment, images: int, views: int, seed: int) -> dict[str, torch.Tensor]:
    """``views`` views of each of ``images`` images: tensors shaped (images, views, ...)."""
    params = augment.sample(images * views, torch.Generator().manual_seed(seed))
    return {key: value.view(images, views, *value.shape[1:]) for key, value in params.items()}


@torch.no_grad()
def compute_soft_targets(teacher: torch.nn.Module, cache: torch.Tensor, augment: BatchAugment,
                         views: int, precision: Precision, colour_constancy: bool, path: Path, seed: int = 0,
                         batch_size: int = 64, checkpoint_minutes: float = 10.0) -> dict:
    """Teacher logits (float16, images x views x classes) for fixed views of ``cache``, saved at
    ``path`` with the views' parameters; continues a partial file at ``path``."""
    partial = path.with_suffix(".partial")
    state = (torch.load(partial, weights_only=True) if partial.exists() else
             {"params": view_parameters(augment, len(cache), views, seed), "done": 0, "views": views,
              "logits": torch.zeros(len(cache), views, NUM_CLASSES, dtype=torch.float16)})
    pairs = torch.cartesian_prod(torch.arange(len(cache)), torch.arange(views))
    teacher.eval()
    saved = time.monotonic()
    for start in tqdm(range(state["done"], len(pairs), batch_size), desc="soft targets", mininterval=30):
        images, view = pairs[start:start + batch_size].unbind(1)
        rendered = augment.render(cache[images], stored_views(state["params"], images, view))
        with precision.autocast():
            logits = teacher(to_model_input(rendered, precision.device, colour_constancy, precision.channels_last))
        state["logits"][images, view] = logits.float().cpu().half()
        state["done"] = start + len(images)
        if time.monotonic() - saved > checkpoint_minutes * 60:
            torch.save(state, partial)
            saved = time.monotonic()
    torch.save(state, path)
    partial.unlink(missing_ok=True)
    return state
