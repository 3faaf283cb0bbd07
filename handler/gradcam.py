"""Grad-CAM (Selvaraju et al. 2017): which parts of the frame pushed the network towards a class.

A forward hook keeps the chosen layer's activations; the gradient of each image's class score with
respect to them weights their channels. A few dozen lines here instead of the ``grad-cam`` package,
which would bring OpenCV and more into the serving image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# The heatmap is sent at 1/8 of the frame: layer4's own grid (1/32) is too coarse to line up with a
# photo, and finer would only repeat the same interpolation.
HEATMAP_STRIDE = 8


@dataclass
class GradCam:
    heatmaps: torch.Tensor  # N x h x w on [0, 1]; each image's strongest cell is 1
    logits: torch.Tensor  # N x classes, from the same forward pass
    classes: torch.Tensor  # N: the class each heatmap explains


def heatmap_shape(frame: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of the heatmap for a frame of (height, width) pixels, at the frame's aspect."""
    return max(1, round(frame[0] / HEATMAP_STRIDE)), max(1, round(frame[1] / HEATMAP_STRIDE))


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor,
             classes: list[int | None]) -> GradCam:
    """Heatmaps for a batch of network inputs (N x 3 x H x W); ``classes[i]`` is the class to explain
    for image i, or None for the one the network ranks first."""
    kept: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _module, _inputs, output: kept.append(output))
    try:
        # TorchServe calls the explain path outside inference_mode, but grad mode may still be off.
        with torch.enable_grad():
            # Gradients must flow to the activations even if the weights were frozen.
            logits = model(images.detach().requires_grad_(True))
            [activations] = kept
            top = logits.argmax(dim=1)
            chosen = torch.tensor([top[i] if c is None else c for i, c in enumerate(classes)],
                                  device=logits.device)
            # Images in eval mode do not interact, so one backward pass gives each image its own gradient.
            scores = logits.gather(1, chosen[:, None]).sum()
            [gradients] = torch.autograd.grad(scores, activations)
    finally:
        hook.remove()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach().float()
    cams = F.interpolate(cams, size=heatmap_shape(tuple(images.shape[-2:])), mode="bilinear",
                         align_corners=False)[:, 0]
    peaks = cams.amax(dim=(1, 2), keepdim=True)
    # A map with no positive evidence stays all zeros rather than dividing by zero.
    heatmaps = torch.where(peaks > 0, cams / peaks.clamp(min=1e-12), torch.zeros_like(cams))
    return GradCam(heatmaps.cpu(), logits.detach().float().cpu(), chosen.cpu())
