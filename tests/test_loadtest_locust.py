"""A short real locust run (2 users, 10 s) against the session's TorchServe, through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import FIXTURES

import settings


def loadtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadtest", *args], cwd=settings.REPO,
                          capture_output=True, text=True, timeout=180)


def test_short_run_has_no_failures_and_a_parsable_summary(torchserve, tmp_path):
    result = loadtest("--host", torchserve.url("inference"), "--metrics-url",
                      torchserve.url("metrics"), "--key-file", str(torchserve.key_file),
                      "--users", "2", "--duration", "10", "--images", str(FIXTURES / "images"),
                      "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0 and summary["error_rate"] == 0
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert summary["requests_per_s"] > 0
    # Every answered request reached TorchServe's counters, split into queue and worker time.
    server = summary["server"]
    assert server["requests"] >= summary["requests"]
    assert server["mean_worker_ms"] > 0 and server["mean_queue_ms"] >= 0
    assert (tmp_path / "latency.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "locust.html").stat().st_size > 0
    assert (tmp_path / "locust_stats_history.csv").read_text().count("\n") > 2
    assert f"failures {summary['failures']}" in result.stdout


def test_refuses_anything_but_loopback(tmp_path):
    result = loadtest("--host", "http://192.0.2.1:8080", "--users", "1", "--duration", "1",
                      "--out", str(tmp_path))
    assert result.returncode == 1
    assert "only loopback" in result.stderr
    assert not (tmp_path / "locust.log").exists()


def test_stops_after_max_requests(torchserve, tmp_path):
    result = loadtest("--host", torchserve.url("inference"), "--metrics-url",
                      torchserve.url("metrics"), "--key-file", str(torchserve.key_file),
                      "--users", "2", "--duration", "5m", "--max-requests", "6",
                      "--images", str(FIXTURES / "images"), "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    # The count bound ends the run long before the 5 minutes; each user may finish one more.
    assert 6 <= summary["requests"] <= 6 + 2
    assert summary["wall_s"] < 120


def test_v2_run_against_the_v2_server_has_no_failures(torchserve_v2, tmp_path):
    result = loadtest("--protocol", "v2", "--host", torchserve_v2.url("inference"),
                      "--metrics-url", torchserve_v2.url("metrics"),
                      "--key-file", str(torchserve_v2.key_file), "--users", "2", "--duration", "5m",
                      "--max-requests", "8", "--images", str(FIXTURES / "images"),
                      "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["protocol"] == "v2"
    assert summary["requests"] >= 8 and summary["failures"] == 0
    assert "/v2/models/skin/infer" in (tmp_path / "locust_stats.csv").read_text()
    assert summary["server"]["requests"] >= summary["requests"]


def test_v1_load_on_the_v2_server_counts_every_request_as_failed(torchserve_v2, tmp_path):
    result = loadtest("--host", torchserve_v2.url("inference"), "--metrics-url", "",
                      "--key-file", str(torchserve_v2.key_file), "--users", "1", "--duration", "5m",
                      "--max-requests", "3", "--images", str(FIXTURES / "images"),
                      "--out", str(tmp_path))
    assert result.returncode == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] >= 3 and summary["failures"] == summary["requests"]
