"""The CPU the handler runs on: which precision flags it has, and how many cores it may use (the
CPU affinity, capped by a container's CPU limit).

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


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU model and which of ``CPU_FLAGS`` it has."""
    model, flags = "unknown", set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"model": model, "flags": [flag for flag in CPU_FLAGS if flag in flags]}


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
