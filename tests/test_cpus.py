"""handler/cpus.py: torch threads follow a container's CPU limit, not the node's core count."""
from __future__ import annotations

import os

import pytest

from handler.cpus import available_cores, cgroup_cpu_limit

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("files,limit", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_limit_from_cgroup_v2_or_v1(tmp_path, files, limit):
    assert cgroup_cpu_limit(cgroup(tmp_path, files)) == limit


def test_a_limit_below_the_affinity_caps_the_cores_and_never_gives_zero(tmp_path):
    assert available_cores(cgroup(tmp_path, {"cpu.max": "50000 100000\n"})) == 1
    assert available_cores(cgroup(tmp_path, {"cpu.max": f"{100000 * (AFFINITY + 8)} 100000\n"})) \
        == AFFINITY
    assert available_cores(cgroup(tmp_path, {"cpu.max": "max 100000\n"})) == AFFINITY
