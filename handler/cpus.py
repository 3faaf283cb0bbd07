"""The CPU the handler runs on: which precision flags it has, and how many cores it may use (the
CPU affinity, capped by a container's CPU limit).

A capped instruction set (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``) makes torch
run an AVX2-only CPU's kernels on a larger one: the flags above the cap are then as good as absent,
so they are left out, and a precision measured under the cap is recorded as measured on an AVX2-only
CPU. That is how a machine with AVX-512 measures the AVX2-only kind (docs/benchmarks.md).

In a Kubernetes pod or a `docker run --cpus` container the affinity still lists every core of the
node, while the CPU limit (a CFS quota) allows only a few: sizing torch's threads by the affinity
then runs dozens of threads on two cores' worth of quota, throttled most of the time.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

# The CPU flags that decide which precision is fast; recorded in every benchmark and training run.
CPU_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
# Flags that give int8 dot products 32-bit sums; without them int8 convolutions go to FBGEMM.
INT8_DOT_FLAGS = ("avx512_vnni", "amx_int8")
AVX2_CAPS = {"ATEN_CPU_CAPABILITY": ("AVX2", "DEFAULT"), "ONEDNN_MAX_CPU_ISA": ("AVX2", "AVX2_VNNI", "AVX", "SSE41")}


def capped_at_avx2(environ: dict[str, str] = os.environ) -> bool:
    """Whether torch's kernels are capped at AVX2 or below (see the module's docstring)."""
    return any(environ.get(name, "").upper() in values for name, values in AVX2_CAPS.items())


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo"), environ: dict[str, str] = os.environ) -> dict:
    """The CPU model and which of ``CPU_FLAGS`` its kernels may use."""
    model, flags = "unknown", set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    if capped_at_avx2(environ):
        return {"model": f"{model}, kernels capped at AVX2", "flags": []}
    return {"model": model, "flags": [flag for flag in CPU_FLAGS if flag in flags]}


def cpu_kind(flags: list[str]) -> str:
    """A name for the kind of CPU with these flags: the CPUs a precision choice holds on."""
    return "-".join(flags) or "avx2"


def quantised_engine(flags: list[str]) -> str:
    """torch's quantised engine for these flags. The x86 engine sends convolutions to oneDNN where
    int8 dot products have 32-bit sums and to FBGEMM elsewhere; it asks the hardware, not the
    kernels' cap, so FBGEMM is named outright where the flags say it is the one that runs."""
    return "x86" if any(flag in flags for flag in INT8_DOT_FLAGS) else "fbgemm"


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit in cores from cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cores(root: Path = CGROUP_ROOT) -> int:
    cores = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    return cores if limit is None else max(1, min(cores, math.floor(limit)))
