"""The network's side of preprocessing: framing to a tensor and colour constancy, shared by the
handler and by training.

Everything that decides what the network sees at serving time (input size, mean, std, framing and
colour constancy) lives here or in imaging/, and training imports it, so the served preprocessing is
the evaluated one. The path of an image: ``imaging.decode.decode_image`` -> ``eval_transform``
(uint8 frame at the release's height x width) -> ``model_input`` (Shades of Gray, then mean/std) ->
the network.
"""
from __future__ import annotations

import torch
from PIL import Image

from imaging.decode import decode_image
from imaging.framing import fit_to_frame, input_shape

# Minkowski norm of Shades of Gray (Finlayson & Trezzi 2004), as the ISIC 2018 and 2019 winners used.
SHADES_OF_GRAY_POWER = 6
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a uint8 CHW tensor; stays uint8 so batches are cheap to build."""
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return array.view(image.height, image.width, 3).permute(2, 0, 1).contiguous()


def eval_transform(image: Image.Image, size: int | tuple[int, int]) -> torch.Tensor:
    """The deterministic transform used for validation, test and serving (uint8 CHW), at a release's
    input ``size`` (its metadata's input_size)."""
    return image_to_tensor(fit_to_frame(image, size))


def frame_photo(data: bytes, size: int | tuple[int, int] | list[int]) -> torch.Tensor:
    """A photo's bytes decoded (JPEG draft mode down to the frame) and framed as served, for what
    needs the task network's frame alone (uint8 CHW)."""
    height, width = input_shape(size)
    return eval_transform(decode_image(data, draft_size=max(height, width)), (height, width))


def shades_of_gray(batch: torch.Tensor, power: int = SHADES_OF_GRAY_POWER) -> torch.Tensor:
    """Colour constancy: scale each channel so that the image's Minkowski-``power`` illuminant
    estimate becomes grey, keeping its overall level. NCHW in (uint8 or float on 0-255), float out.

    Different dermatoscopes and phone cameras tint the same lesion differently; removing the tint
    per image lets a model trained at a few clinics read images from others.
    """
    pixels = batch.float()
    illuminant = (pixels / 255).pow(power).mean(dim=(-2, -1), keepdim=True).pow(1 / power)
    gains = illuminant.mean(dim=-3, keepdim=True) / illuminant.clamp(min=1e-3)
    return (pixels * gains).clamp(0, 255)


def normalize(batch: torch.Tensor, mean: tuple[float, ...] = MEAN,
              std: tuple[float, ...] = STD) -> torch.Tensor:
    """NCHW pixels on 0-255 (uint8 or float, on any device) to the float input the network expects."""
    mean_t = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=batch.device).view(1, -1, 1, 1) * 255
    return (batch.float() - mean_t) / std_t


def model_input(batch: torch.Tensor, colour_constancy: bool, mean: tuple[float, ...] = MEAN,
                std: tuple[float, ...] = STD) -> torch.Tensor:
    """What the network sees for a batch of frames on 0-255: the one step that training, evaluation
    and the handler all call after framing."""
    return normalize(shades_of_gray(batch) if colour_constancy else batch, mean, std)


def dihedral_views(images: torch.Tensor) -> list[torch.Tensor]:
    """The eight flips and quarter turns of a batch (a lesion has no upright); the network pools
    globally, so a turned frame's other shape is fine."""
    turned = images.transpose(-2, -1)
    return [view for base in (images, turned) for view in
            (base, base.flip(-1), base.flip(-2), base.flip(-1, -2))]


def serves_dihedral_tta(metadata: dict) -> bool:
    """Whether a release answers with its logits averaged over the eight ``dihedral_views``: decided
    on validation when it was trained (``metrics.dihedral_tta_val_balanced_accuracy.ships``)."""
    decision = (metadata.get("metrics") or {}).get("dihedral_tta_val_balanced_accuracy") or {}
    return bool(decision.get("ships"))


def release_input(batch: torch.Tensor, metadata: dict) -> torch.Tensor:
    """``model_input`` with a release's own colour constancy, mean and std (its metadata)."""
    return model_input(batch, bool(metadata.get("colour_constancy")), tuple(metadata["mean"]),
                       tuple(metadata["std"]))
