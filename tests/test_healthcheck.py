"""tools/healthcheck.py, the image's HEALTHCHECK, against the session's real TorchServe."""
from __future__ import annotations

import subprocess
import sys

import settings
from serve.torchserve import free_port


def healthcheck(url: str, key_file) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.healthcheck", "--url", url,
                           "--key-file", str(key_file)], cwd=settings.REPO, capture_output=True,
                          text=True, timeout=60)


def test_healthy_with_the_key_file(torchserve):
    result = healthcheck(f"{torchserve.url('inference')}/ping", torchserve.key_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "healthy"


def test_unhealthy_without_a_key_because_0_12_checks_it_on_ping(torchserve, tmp_path):
    result = healthcheck(f"{torchserve.url('inference')}/ping", tmp_path / "no-key-file.json")
    assert result.returncode == 1
    assert "answered 400" in result.stderr and "InvalidKeyException" in result.stderr


def test_unhealthy_when_nothing_listens(torchserve):
    result = healthcheck(f"http://127.0.0.1:{free_port()}/ping", torchserve.key_file)
    assert result.returncode == 1 and "no answer" in result.stderr
