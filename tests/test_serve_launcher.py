"""`make serve`'s supervisor: TorchServe and the page come up together and go down on Ctrl-C."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests

import settings
from serve.torchserve import free_port, read_key, read_properties


def start_supervisor(home: Path, model_store: Path, port: int) -> subprocess.Popen:
    """`make serve`'s supervisor on free ports, started as a process."""
    return subprocess.Popen(
        [sys.executable, "-m", "serve.launcher", "--home", str(home), "--model-store",
         str(model_store), "--free-ports", "--port", str(port)],
        cwd=settings.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def until_ready(supervisor: subprocess.Popen) -> list[str]:
    """The supervisor's output up to and including its "SKIN is ready" line."""
    lines: list[str] = []
    while not any("SKIN is ready" in line for line in lines):
        line = supervisor.stdout.readline()
        assert line, "the supervisor exited early:\n" + "".join(lines)
        lines.append(line)
    return lines


def test_supervisor_starts_both_and_stops_both_on_ctrl_c(model_store, fixture_images, tmp_path):
    home, port = tmp_path / "serve", free_port()
    supervisor = start_supervisor(home, model_store, port)
    try:
        lines = until_ready(supervisor)
        assert f"Open http://localhost:{port}" in lines[-1]
        inference = read_properties(home / "config.properties")["inference_address"]
        assert requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=5).text == "ok"
        key = read_key(home / "key_file.json")
        answer = requests.post(f"{inference}/predictions/skin", timeout=60,
                               data=fixture_images["MEL_ISIC_0024310.jpg"],
                               headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200

        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=90) == 0
    finally:
        if supervisor.poll() is None:  # a failed assertion above: still stop both servers
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=90)
    for url in (f"http://127.0.0.1:{port}/_stcore/health", f"{inference}/predictions/skin"):
        try:
            requests.get(url, timeout=5)
        except requests.ConnectionError:
            continue
        raise AssertionError(f"{url} still answers after Ctrl-C")
