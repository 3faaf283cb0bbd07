"""The served network at a precision: fp32, bf16 autocast (channels_last) or int8.

int8 is PyTorch's FX graph mode quantisation with the x86 backend (oneDNN/FBGEMM, VNNI where the
CPU has it). Every precision runs one module whose forward returns the 512 penultimate features
beside the logits: ``Penultimate`` wraps the float network and int8 quantises that wrapper whole.
Release 2.0's int8 calibration was recorded on that graph, when the gate still read those features.

An int8 release stores only its calibration: each activation's scale and zero point, found by
histogram observers as the calibration images went through (a few kB). The worker rebuilds the
quantised graph from the float weights and those at start-up; the weights' own scales come from
the weights.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.observer import FixedQParamsObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from torchvision.models.resnet import ResNet

PRECISIONS = ("fp32", "bf16", "int8")
CPU = torch.device("cpu")
CALIBRATION_FILE = "skin_int8_calibration.pt"
QUANTISATION_BACKEND = "x86"
# Activations on the full 8-bit range (the x86 default keeps 7 bits for CPUs without VNNI, where
# the 16-bit accumulation could saturate): 7-bit activations move the outputs several times more
# (docs/benchmarks.md, "Serving precision").
QCONFIG_SOURCE = "onednn"
# Float at both ends, for about a tenth of int8's speed: the stem sees the normalised photo itself,
# whose 8-bit quantisation flips near-ties between classes; the last layer is tiny, and quantising
# it only adds error to the logits.
FLOAT_MODULES = ("model.conv1", "model.bn1", "model.relu", "model.fc")


def penultimate(model: ResNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) in one pass: the pooled 512 features that feed ResNet's last layer."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    features = torch.flatten(model.avgpool(x), 1)
    return features, model.fc(features)


class Penultimate(torch.nn.Module):
    """The network as the handler runs it: images in, (features, logits) out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return penultimate(self.model, images)


def prepare_int8(model: torch.nn.Module, input_size: tuple[int, int]) -> torch.fx.GraphModule:
    """A copy of ``model`` with observers on every activation, ready to see calibration images."""
    torch.backends.quantized.engine = QUANTISATION_BACKEND
    example = (torch.zeros(1, 3, *input_size),)
    mapping = get_default_qconfig_mapping(QCONFIG_SOURCE)
    for name in FLOAT_MODULES:
        mapping.set_module_name(name, None)
    with warnings.catch_warnings():
        # torch 2.14 still ships FX quantisation but warns on every call that torchao's PT2E
        # replaces it; torchao is not a dependency here (docs/benchmarks.md).
        warnings.simplefilter("ignore", DeprecationWarning)
        return prepare_fx(Penultimate(copy.deepcopy(model)).eval(), mapping, example)


def calibrate(model: torch.nn.Module, batches: Iterable[torch.Tensor],
              input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Each activation's quantisation parameters after ``batches`` (normalised model inputs) went
    through the network: ``{observer: tensor([scale, zero_point, quant_min, quant_max])}``."""
    prepared = prepare_int8(model, input_size)
    with torch.inference_mode():
        for batch in batches:
            prepared(batch)
    calibration = {}
    for name, observer in prepared.named_modules():
        if name.startswith("activation_post_process_"):
            scale, zero_point = observer.calculate_qparams()
            calibration[name] = torch.tensor([float(scale), float(zero_point), observer.quant_min,
                                              observer.quant_max], dtype=torch.float64)
    return calibration


def quantise(model: torch.nn.Module, calibration: dict[str, torch.Tensor],
             input_size: tuple[int, int]) -> torch.fx.GraphModule:
    """The int8 module of ``model`` under a stored calibration. An empty calibration leaves the
    observers at their defaults (scale 1, no range): a deliberately broken quantisation."""
    prepared = prepare_int8(model, input_size)
    for name, qparams in calibration.items():
        # Fixed parameters skip the histogram search at conversion, so a worker starts sooner.
        scale, zero_point, quant_min, quant_max = qparams.tolist()
        setattr(prepared, name, FixedQParamsObserver(scale, int(zero_point), dtype=torch.quint8,
                                                     quant_min=int(quant_min), quant_max=int(quant_max)))
    with warnings.catch_warnings():
        # An uncalibrated observer warns that it falls back to defaults; that is the broken case.
        warnings.simplefilter("ignore")
        return convert_fx(prepared)


@dataclass
class Runner:
    """The network at one precision: ``runner(images)`` gives (features, logits) in float32."""

    precision: str
    module: torch.nn.Module
    device: torch.device

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), self._autocast():
            if self.precision in ("bf16", "fp16"):
                images = images.contiguous(memory_format=torch.channels_last)
            features, logits = self.module(images)
        return features.float(), logits.float()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def runner(model: torch.nn.Module, precision: str, input_size: tuple[int, int],
           calibration: dict[str, torch.Tensor] | None = None,
           device: torch.device = CPU) -> Runner:
    """``model`` (float, eval) run at ``precision``; int8 needs the release's ``calibration``.
    On a GPU every precision runs as fp16 autocast, channels_last: int8 and bf16 are CPU paths.
    ``model`` itself stays float (Grad-CAM needs its gradients)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        return Runner("fp16", Penultimate(model.to(memory_format=torch.channels_last)), device)
    if precision == "int8":
        if calibration is None:
            raise ValueError(f"int8 needs the release's calibration ({CALIBRATION_FILE}): run "
                             "`make precision`")
        return Runner("int8", quantise(model, calibration, input_size), device)
    if precision == "bf16":
        return Runner("bf16", Penultimate(copy.deepcopy(model).to(memory_format=torch.channels_last)),
                      device)
    return Runner("fp32", Penultimate(model), device)
