"""``python -m ops`` against the session's real TorchServe: every subcommand and the error cases.

The tests that change the server (scale, register, set-default, unregister) put it back as they
found it: one worker, version 0.0.1 the default.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests
from conftest import write_random_release

import settings
from handler.cpus import available_cores
from serve.torchserve import free_port


def ops(torchserve, *args: str, key_file=None, management_url=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ops", "--key-file", str(key_file or torchserve.key_file),
               "--management-url", management_url or torchserve.url("management"),
               "--metrics-url", torchserve.url("metrics"), *args]
    return subprocess.run(command, cwd=settings.REPO, capture_output=True, text=True, timeout=300)


def ops_json(torchserve, *args: str):
    result = ops(torchserve, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_models_lists_skin(torchserve):
    text = ops(torchserve, "models")
    assert text.returncode == 0
    assert ["skin", "skin.mar"] in [line.split() for line in text.stdout.splitlines()]
    assert {"modelName": "skin", "modelUrl": "skin.mar"} in ops_json(torchserve, "models")


def test_describe_shows_workers_memory_and_queue(torchserve):
    [version] = ops_json(torchserve, "describe", "skin")
    [worker] = version["workers"]
    assert worker["status"] == "READY" and worker["pid"] > 0
    assert worker["rssMB"] > 100  # a Python worker with torch loaded, measured on this machine
    assert version["jobQueueStatus"]["pendingRequests"] == 0
    threads = version["threads"]
    assert threads["gate_beside"] is (threads["torch_threads"] < available_cores())
    text = ops(torchserve, "describe", "skin").stdout
    assert f"pid {worker['pid']}" in text and "READY" in text and "pending" in text
    assert f"threads      {threads['torch_threads']} torch thread(s) per worker" in text
    assert ("beside the task network" in text) is threads["gate_beside"]


def test_metrics_count_a_request(torchserve, inference_url, fixture_images):
    before = ops_json(torchserve, "metrics")["models"].get("skin", {}).get("requests", 0)
    image = next(iter(fixture_images.values()))
    response = requests.post(inference_url, data=image, headers=torchserve.headers(), timeout=60)
    assert response.status_code == 200
    skin = ops_json(torchserve, "metrics")["models"]["skin"]
    assert skin["requests"] == before + 1
    assert skin["mean_worker_ms"] > 0 and skin["mean_queue_ms"] >= 0
    assert skin["last_batch"]["SkinBatchSize"] >= 1
    text = ops(torchserve, "metrics").stdout
    assert "queued" in text and "in the worker" in text


def test_scale_up_and_back(torchserve):
    try:
        scaled = ops_json(torchserve, "scale", "skin", "--min", "2", "--max", "2")
        assert "2" in scaled["status"]
        workers = scaled["versions"][0]["workers"]
        assert len(workers) == 2 and {w["status"] for w in workers} == {"READY"}
    finally:
        back = ops_json(torchserve, "scale", "skin", "--min", "1", "--max", "1")
    assert len(back["versions"][0]["workers"]) == 1


def test_register_switch_and_unregister_a_version(torchserve, model_store, inference_url,
                                                  fixture_images, tmp_path):
    weights = write_random_release(tmp_path, version="0.0.2")
    registered = ops_json(torchserve, "register", "--weights", str(weights), "--model-store",
                          str(model_store), "--batch-size", "2", "--max-batch-delay", "10",
                          "--workers", "1")
    assert registered["archive"] == "skin-0.0.2.mar" and (model_store / "skin-0.0.2.mar").exists()
    try:
        versions = {v["modelVersion"]: v for v in ops_json(torchserve, "describe", "skin")}
        assert versions["0.0.2"]["batchSize"] == 2 and versions["0.0.2"]["maxBatchDelay"] == 10
        image = next(iter(fixture_images.values()))
        ops_json(torchserve, "set-default", "skin", "0.0.2")
        answer = requests.post(inference_url, data=image, headers=torchserve.headers(), timeout=60)
        assert answer.json()["version"] == "0.0.2"
    finally:
        ops_json(torchserve, "set-default", "skin", "0.0.1")
        unregistered = ops_json(torchserve, "unregister", "skin", "0.0.2")
    assert "unregistered" in unregistered["status"]
    assert [v["modelVersion"] for v in ops_json(torchserve, "describe", "skin")] == ["0.0.1"]


def test_register_without_release_is_one_line(torchserve, tmp_path):
    assert_one_line_error(ops(torchserve, "register", "--weights", str(tmp_path / "none.pt")),
                          "cannot build an archive")


def test_unknown_model_is_one_line(torchserve):
    assert_one_line_error(ops(torchserve, "describe", "no-such-model"), "404",
                          "no-such-model")


def test_bad_token_is_one_line(torchserve, tmp_path):
    keys = json.loads(torchserve.key_file.read_text())
    keys["management"]["key"] = "wrong"
    bad = tmp_path / "key_file.json"
    bad.write_text(json.dumps(keys))
    assert_one_line_error(ops(torchserve, "models", key_file=bad), "refused")


def test_missing_key_file_is_one_line(torchserve, tmp_path):
    assert_one_line_error(ops(torchserve, "models", key_file=tmp_path / "absent.json"),
                          "not found")


@pytest.mark.parametrize("command", ["models", "metrics"])
def test_server_down_is_one_line(torchserve, command):
    down = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run([sys.executable, "-m", "ops", "--key-file", str(torchserve.key_file),
                             "--management-url", down, "--metrics-url", down, command],
                            cwd=settings.REPO, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "cannot reach", down)
