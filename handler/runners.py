"""The served network at a precision: fp32, bf16 weights (channels_last) or int8.

int8 is PyTorch's FX graph mode quantisation (oneDNN where the CPU has 32-bit int8 sums, FBGEMM
elsewhere; ``handler.cpus.quantised_engine``), in two variants: ``int8`` with activations on the
full 8-bit range, and ``int8-7bit`` with 7-bit activations (the x86 default's reduce_range), which
cannot saturate the 16-bit pair sums of a CPU without VNNI but quantises each activation twice as
coarsely. Which of them holds accuracy on a given CPU is measured there (tools/precision_choice.py).
Every precision runs one module whose forward returns the 512 penultimate features beside the
logits: ``Penultimate`` wraps the float network and int8 quantises that wrapper whole.

An int8 release stores only its calibrations: each activation's scale and zero point per variant,
found by histogram observers as the calibration images went through (a few kB). The worker
rebuilds the quantised graph from the float weights and those at start-up; the weights' own scales
come from the weights.
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

from handler.cpus import cpu_info, quantised_engine
from handler.preprocessing import dihedral_views

# Each int8 variant by the qconfig that sets its activations' range: oneDNN's default has 8 bits,
# the x86 default 7 (reduce_range).
INT8_QCONFIGS = {"int8": "onednn", "int8-7bit": "x86"}
PRECISIONS = ("fp32", "bf16", *INT8_QCONFIGS)
CPU = torch.device("cpu")
CALIBRATION_FILE = "skin_int8_calibration.pt"
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


def prepare_int8(model: torch.nn.Module, input_size: tuple[int, int], variant: str) -> torch.fx.GraphModule:
    """A copy of ``model`` with observers on every activation (at ``variant``'s range), ready to
    see calibration images."""
    torch.backends.quantized.engine = quantised_engine(cpu_info()["flags"])
    example = (torch.zeros(1, 3, *input_size),)
    mapping = get_default_qconfig_mapping(INT8_QCONFIGS[variant])
    for name in FLOAT_MODULES:
        mapping.set_module_name(name, None)
    with warnings.catch_warnings():
        # torch 2.14 still ships FX quantisation but warns on every call that torchao's PT2E
        # replaces it; torchao is not a dependency here (docs/benchmarks.md).
        warnings.simplefilter("ignore", DeprecationWarning)
        # The 7-bit variant's qconfig (the x86 default) still names reduce_range, which torch warns
        # it will deprecate; its quant_min and quant_max are what the calibration records.
        warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")
        return prepare_fx(Penultimate(copy.deepcopy(model)).eval(), mapping, example)


def calibrate(model: torch.nn.Module, batches: Iterable[torch.Tensor],
              input_size: tuple[int, int]) -> dict[str, dict[str, torch.Tensor]]:
    """Each int8 variant's activation quantisation parameters after ``batches`` (normalised model
    inputs) went through the network:
    ``{variant: {observer: tensor([scale, zero_point, quant_min, quant_max])}}``."""
    batches = list(batches)
    calibrations = {}
    for variant in INT8_QCONFIGS:
        prepared = prepare_int8(model, input_size, variant)
        with torch.inference_mode():
            for batch in batches:
                prepared(batch)
        calibrations[variant] = {}
        for name, observer in prepared.named_modules():
            if name.startswith("activation_post_process_"):
                scale, zero_point = observer.calculate_qparams()
                calibrations[variant][name] = torch.tensor(
                    [float(scale), float(zero_point), observer.quant_min, observer.quant_max],
                    dtype=torch.float64)
    return calibrations


def quantise(model: torch.nn.Module, calibration: dict[str, torch.Tensor],
             input_size: tuple[int, int], variant: str = "int8") -> torch.fx.GraphModule:
    """The int8 module of ``model`` under one variant's stored calibration. An empty calibration
    leaves the observers at their defaults (scale 1, no range): a deliberately broken quantisation."""
    prepared = prepare_int8(model, input_size, variant)
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
    dihedral: bool = False  # average over the eight flips and quarter turns (the release's choice)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.dihedral:
            return self._forward(images)
        features, logits = zip(*(self._forward(view) for view in dihedral_views(images)))
        return torch.stack(features).mean(0), torch.stack(logits).mean(0)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        autocast = (torch.autocast("cuda", dtype=torch.float16) if self.precision == "fp16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            if self.precision == "bf16":
                images = images.to(torch.bfloat16)
            if self.precision in ("bf16", "fp16"):
                images = images.contiguous(memory_format=torch.channels_last)
            features, logits = self.module(images)
        return features.float(), logits.float()


def runner(model: torch.nn.Module, precision: str, input_size: tuple[int, int],
           calibrations: dict[str, dict[str, torch.Tensor]] | None = None,
           device: torch.device = CPU, dihedral: bool = False) -> Runner:
    """``model`` (float, eval) run at ``precision``; int8 needs the release's ``calibrations``.
    On a GPU every precision runs as fp16 autocast, channels_last: int8 and bf16 are CPU paths.
    ``model`` itself stays float (Grad-CAM needs its gradients). ``dihedral``: answer with the
    average over the eight flips and quarter turns, for a release that ships that."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        return Runner("fp16", Penultimate(model.to(memory_format=torch.channels_last)), device, dihedral)
    if precision in INT8_QCONFIGS:
        if calibrations is None:
            raise ValueError(f"{precision} needs the release's calibration ({CALIBRATION_FILE}): run "
                             "`make precision`")
        return Runner(precision, quantise(model, calibrations[precision], input_size, precision), device,
                      dihedral)
    if precision == "bf16":
        # Weights stored in bf16, not autocast: autocast casts the float weights again on every
        # call, which costs a lone photo on one thread more than its convolutions do.
        bf16 = copy.deepcopy(model).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        return Runner("bf16", Penultimate(bf16), device, dihedral)
    return Runner("fp32", Penultimate(model), device, dihedral)
