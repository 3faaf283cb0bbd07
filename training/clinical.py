"""Clinical close-ups, simulated: what a phone held over a lesion without a dermatoscope might send.

No clinical photo of these lesions exists here, so each is made from a dermoscopy test photo, and
crudely. A dermatoscope magnifies about tenfold and, with polarised light or immersion, shows the
pigment network, dots and vessels under the surface; a phone a hand's breadth away shows a small
brown patch in a field of skin, its surface shine and texture, under the camera's own white balance.
So each view zooms out (the lesion covers a third to a half of the frame's width, the rest the
photo's border colour, as BatchAugment's zoom-out fills it), blurs the structure away, adds the
skin's mottling and grain and a few specular highlights, and warms the colour. Real clinical photos
differ in ways this does not imitate (hair, shadows, curvature, other body sites); the figures on
these views say what the gate and the model do with this kind of change, not what they do on a
clinic's phone photos.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2.functional import gaussian_blur

from training.presets import BatchAugment

# Rendered at a phone photo's 3:4 before the handler frames it for each network.
SIZE = (240, 320)
ZOOM = (0.3, 0.55)
# The camera's warmer white balance (R, G, B gains) against a dermatoscope's neutral LEDs.
WARM = (1.06, 1.0, 0.9)


def clinical_views(frames: torch.Tensor, generator: torch.Generator) -> list[Image.Image]:
    """One simulated clinical close-up of each uint8 NCHW dermoscopy frame, as an RGB photo."""
    n = len(frames)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, generator=generator) * (high - low) + low

    geometry = {"zoom": uniform(*ZOOM), "log_ratio": torch.zeros(n),
                "flip": torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0),
                "angle": uniform(-math.pi, math.pi), "shift": uniform(-1, 1, 2)}
    views = BatchAugment.geometry(frames.float(), geometry, SIZE)
    sigmas = uniform(1.5, 3.0)
    views = torch.cat([gaussian_blur(view.unsqueeze(0), [2 * math.ceil(2 * float(sigma)) + 1] * 2,
                                     [float(sigma)] * 2) for view, sigma in zip(views, sigmas)])
    # Mottling: noise at a twentieth of the frame, smoothly upsampled, a few percent either way.
    mottling = F.interpolate(uniform(-1, 1, 1, SIZE[0] // 20, SIZE[1] // 20), size=SIZE, mode="bicubic",
                             align_corners=False)
    views = views * (1 + 0.06 * mottling) + torch.randn(views.shape, generator=generator) * 3
    views = views * torch.tensor(WARM).view(1, 3, 1, 1) + shine(n, generator)
    return [Image.fromarray(view.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
            for view in views]


def shine(n: int, generator: torch.Generator, spots: int = 4) -> torch.Tensor:
    """Specular highlights: a few small bright Gaussian spots per view, (n, 1, H, W) on 0-255."""
    ys = torch.arange(SIZE[0]).view(1, 1, -1, 1).float()
    xs = torch.arange(SIZE[1]).view(1, 1, 1, -1).float()
    centre_y = torch.rand(n, spots, 1, 1, generator=generator) * SIZE[0]
    centre_x = torch.rand(n, spots, 1, 1, generator=generator) * SIZE[1]
    radius = torch.rand(n, spots, 1, 1, generator=generator) * 4 + 2
    height = torch.rand(n, spots, 1, 1, generator=generator) * 80 + 60
    spot = height * torch.exp(-((ys - centre_y) ** 2 + (xs - centre_x) ** 2) / (2 * radius ** 2))
    return spot.sum(dim=1, keepdim=True)
