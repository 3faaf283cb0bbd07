"""How many cores the handler may use: the CPU affinity, capped by a container's CPU limit.

In a Kubernetes pod or a `docker run --cpus` container the affinity still lists every core of the
node, while the CPU limit (a CFS quota) allows only a few: sizing torch's threads by the affinity
then runs dozens of threads on two cores' worth of quota, throttled most of the time.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


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
