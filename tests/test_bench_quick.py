"""``python -m bench --quick`` runs every kind of set-up for real and prints its tables: the CPU's
flags, decode cost and the in-process limit at each precision and photo size, what each step of a
served image costs and the gate's share of it, TorchServe, Flask.

Figures are not asserted (speed targets belong in the benchmark's output), only the structure, that
every set-up answered without errors, and that the run recommends a set-up without touching the
shipped configuration.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from conftest import FIXTURES, write_random_release

import settings
from bench.benchmark import LONE_GAP_S, LONE_PAUSE_S
from handler.runners import PRECISIONS
from tools.archive import DEFAULT_CONFIG


def test_quick_mode_prints_the_table(tmp_path):
    weights = write_random_release(tmp_path / "release")
    shipped = DEFAULT_CONFIG.read_text(), settings.TORCHSERVE_CONFIG.read_text()
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--weights", str(weights),
                             "--images", str(FIXTURES / "images"), "--concurrency", "4",
                             "--out", str(tmp_path / "out")],
                            cwd=settings.REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("| set-up | img/s | p50 ms | p99 ms | errors | single-request p50 ms | "
                        f"single-request p50 ms, {LONE_GAP_S:g} s apart |")
    table = [line for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
             if line.startswith("| ")]
    labels = [line.split(" | ")[0][2:] for line in table[1:]]
    limits = [label for label in labels if label.startswith("in-process limit")]
    assert limits and labels[:len(limits)] == limits
    assert [label.split(",")[0] for label in labels[len(limits):]] == [
        "TorchServe batch 1", "TorchServe batch 8", "Flask baseline"]
    for name in ("best TorchServe / in-process limit at the served precision",
                 "best TorchServe / Flask baseline", "single-request p50 / model-only latency",
                 "single-request p50, requests apart / model-only latency",
                 "cold start to READY, s"):
        assert f"{name}: " in result.stdout
    assert (f"model-only latency with 1 thread, {LONE_PAUSE_S * 1000:.0f} ms apart as a worker runs lone "
            "requests (p50): ") in result.stdout
    assert "CPU flags: amx_int8 " in result.stdout and "avx512_vnni " in result.stdout
    assert "served precision: fp32 (default" in result.stdout  # a random release has no choice
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(row["images_per_s"] > 0 and row["errors"] == 0 for row in results["rows"])
    measured = [row for row in results["rows"] if row["p50_ms"] is not None]
    assert measured and all(row["single_p50_ms"] > 0 and row["spaced_p50_ms"] > 0 for row in measured)
    sizes = ["200x150", "1024x768", "4000x3000"]
    assert list(results["decode_ms"]) == sizes and all(ms > 0 for ms in results["decode_ms"].values())
    assert {name: list(by_size) for name, by_size in results["limits"].items()} == {
        name: sizes for name in PRECISIONS}
    assert all(value > 0 for by_size in results["limits"].values() for value in by_size.values())
    assert 0 < results["cold_start_to_ready_s"] < 120
    assert results["model_only_paused_p50_ms"]["p50_ms"] > 0
    assert (f"a lone photo's task network and the gate's, 1 thread each, {LONE_PAUSE_S * 1000:.0f} ms "
            "apart (p50): the gate beside: ") in result.stdout
    lone = results["lone_photo_p50_ms"]
    # Each photo's time with the gate is its task network's and more, so the medians keep that order.
    assert all(lone[mode]["both_ms"] >= lone[mode]["task_ms"] > 0 for mode in ("beside", "after"))
    assert "the gate's share of a served image's cost: " in result.stdout
    steps = results["step_cpu_ms_per_image"]
    assert all(steps[name] > 0 for name in ("decode_ms", "model_ms", "gate_ms"))
    assert steps["gate_share"] == pytest.approx(
        steps["gate_ms"] / (steps["decode_ms"] + steps["model_ms"] + steps["gate_ms"]))
    parts = results["lone_request_ms"]
    assert parts["decode the photo"] > 0 and parts["task network and softmax"] > 0
    assert "one lone request taken apart" in result.stdout
    assert (DEFAULT_CONFIG.read_text(), settings.TORCHSERVE_CONFIG.read_text()) == shipped
    assert (tmp_path / "out" / "recommended.json").is_file()
