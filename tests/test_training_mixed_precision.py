"""Choosing the training arithmetic: reading the CPU, timing fp32 against bf16, bf16 autocast."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from handler.cpus import cpu_info
from training import mixed_precision as training_precision
from training import speed
from training.mixed_precision import Precision, choose_precision, cpu_candidates

CPU = torch.device("cpu")
SMALL_SHAPE = (4, 3, 16, 16)

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_bf16 amx_tile
bugs\t\t: spectre_v1

processor\t: 1
model name\t: a second socket that must not win
flags\t\t: fpu avx512_bf16 amx_int8
"""


def small_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 8))


def test_cpu_info_reads_the_model_and_the_flags_that_matter(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    info = cpu_info(tmp_path / "cpuinfo")
    assert info == {"model": "Intel(R) Xeon(R) Platinum 8480+",
                    "flags": ["avx512f", "avx512_vnni", "amx_tile", "amx_bf16"]}
    assert cpu_info(tmp_path / "missing") == {"model": "unknown", "flags": []}


def test_an_explicit_precision_is_taken_without_timing() -> None:
    built: list[torch.nn.Module] = []

    def build() -> torch.nn.Module:
        built.append(small_model())
        return built[-1]

    precision, speeds = choose_precision("fp32", CPU, build, SMALL_SHAPE)
    assert precision == Precision("fp32", CPU) and speeds == {} and not built


def test_auto_times_each_candidate_and_keeps_the_faster() -> None:
    precision, speeds = choose_precision("auto", CPU, small_model, SMALL_SHAPE)
    assert set(speeds) == set(cpu_candidates()) and all(speed > 0 for speed in speeds.values())
    assert precision.name == max(speeds, key=speeds.get) and precision.device == CPU


def test_bf16_is_a_candidate_only_where_the_cpu_has_bf16_kernels(monkeypatch) -> None:
    monkeypatch.setattr(training_precision, "has_bf16_kernels", lambda: True)
    assert cpu_candidates() == ("fp32", "bf16")
    monkeypatch.setattr(training_precision, "has_bf16_kernels", lambda: False)
    precision, speeds = choose_precision("auto", CPU, small_model, SMALL_SHAPE)
    assert precision.name == "fp32" and set(speeds) == {"fp32"}


def test_bf16_autocast_runs_matmuls_in_bf16_on_the_cpu() -> None:
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    bf16, fp32 = Precision("bf16", CPU), Precision("fp32", CPU)
    with bf16.autocast():
        assert (a @ b).dtype == torch.bfloat16
    with fp32.autocast():
        assert (a @ b).dtype == torch.float32
    assert bf16.channels_last and not fp32.channels_last
    assert not bf16.grad_scaler().is_enabled()  # bf16 has fp32's range: no loss scaling


def test_speed_benchmark_reports_every_precision_and_the_data_path(capsys) -> None:
    rows = speed.main(["--sizes", "32x48", "--batch-size", "4", "--steps", "1"])
    assert [row["input"] for row in rows] == [[32, 48]]
    assert set(rows[0]["train"]) == set(cpu_candidates()) and rows[0]["data"] > 0
    printed = capsys.readouterr().out
    assert printed.startswith("CPU ") and "| 32x48 | 4 |" in printed
    assert re.search(r"AdamW step over the student's weights: default [0-9.]+ ms, fused [0-9.]+ ms", printed)
