"""Which arithmetic training runs in, chosen by measuring it on the machine at hand.

The CPU differs from machine to machine (a Xeon with AMX runs bf16 several times faster than fp32;
an AMD EPYC may not), so ``auto`` times a few training steps in each and keeps the faster.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def has_bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or AMX)."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def cpu_candidates() -> tuple[str, ...]:
    """What ``auto`` times on this CPU; fp16 autocast is for CUDA.

    Without bf16 kernels (an AVX2-only CPU) a bf16 backward pass falls back to a generic
    convolution hundreds of times slower than fp32: timing it alone would take many minutes, and
    it could never win.
    """
    return ("fp32", "bf16") if has_bf16_kernels() else ("fp32",)


@dataclass(frozen=True)
class Precision:
    """fp32, or bf16/fp16 autocast with channels_last activations (oneDNN's and cuDNN's fast layout)."""

    name: str
    device: torch.device

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES[self.name]

    @property
    def channels_last(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16, whose small gradients underflow; bf16 has fp32's range."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)


def time_train_steps(precision: Precision, model: torch.nn.Module, shape: tuple[int, ...],
                     steps: int = 3) -> float:
    """Images per second of ``steps`` SGD steps on random input of ``shape`` (after one warm-up)."""
    model = model.to(precision.device).train()
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    images = torch.randn(shape, device=precision.device)
    if precision.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(shape[0], dtype=torch.long, device=precision.device)
    started = 0.0
    for step in range(steps + 1):
        if step == 1:
            if precision.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with precision.autocast():
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if precision.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * shape[0] / (time.perf_counter() - started)


def choose_precision(requested: str, device: torch.device, build_model: Callable[[], torch.nn.Module],
                     shape: tuple[int, ...]) -> tuple[Precision, dict[str, float]]:
    """``requested`` as a Precision, or for ``auto`` the faster of fp32 and bf16 on a fresh
    ``build_model()`` at batch ``shape``; also returns the measured img/s of each candidate."""
    if requested != "auto":
        return Precision(requested, device), {}
    if device.type == "cuda":
        return Precision("fp16", device), {}  # tensor cores: always faster on a GPU
    speeds = {name: time_train_steps(Precision(name, device), build_model(), shape)
              for name in cpu_candidates()}
    return Precision(max(speeds, key=speeds.get), device), speeds
