"""Keys that expire on a real TorchServe: a failed rotation is retried within seconds, not after a
whole interval, and the image's health check reports unhealthy once nothing has renewed the keys."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import settings
from api.keys import read_key, read_keys
from serve.key_rotation import RETRY_FIRST_S, KeyRotator
from serve.torchserve import TorchServe

LIFE_MIN = 0.3  # TorchServe reads the setting as a float of minutes: 18 s
INTERVAL_S = 12.0


@pytest.fixture(scope="module")
def short_lived(model_store, tmp_path_factory) -> Iterator[TorchServe]:
    server = TorchServe.on_free_ports(tmp_path_factory.mktemp("expiry"), model_store=model_store,
                                      overrides={"token_expiration_min": str(LIFE_MIN)})
    with server.running(timeout=180):
        yield server


def healthcheck(server: TorchServe) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.healthcheck", "--url",
                           f"{server.url('inference')}/ping", "--key-file", str(server.key_file)],
                          cwd=settings.REPO, capture_output=True, text=True, timeout=60)


def test_a_failed_rotation_is_retried_after_seconds_not_an_interval(short_lived, tmp_path):
    # The rotator's key file holds a wrong API key until the first rotation has failed on it.
    keys = read_keys(short_lived.key_file)
    broken = tmp_path / "key_file.json"
    broken.write_text(json.dumps({**keys, "API": {"key": "wrong"}}))
    rotator = KeyRotator(short_lived.url("management"), broken, INTERVAL_S)
    started = time.monotonic()
    rotator.start()
    try:
        time.sleep(INTERVAL_S + 1)
        assert read_key(short_lived.key_file) == keys["inference"]["key"], "the first try succeeded"
        broken.write_text(json.dumps(keys))
        while read_key(short_lived.key_file) == keys["inference"]["key"]:
            assert time.monotonic() - started < 2 * INTERVAL_S - 1, "no retry before the next interval"
            time.sleep(0.2)
        assert time.monotonic() - started <= INTERVAL_S + 2 * RETRY_FIRST_S
    finally:
        rotator.stop()


def test_the_health_check_is_unhealthy_once_the_keys_expire_and_healthy_once_renewed(short_lived):
    KeyRotator(short_lived.url("management"), short_lived.key_file, INTERVAL_S).rotate()
    assert healthcheck(short_lived).returncode == 0
    time.sleep(LIFE_MIN * 60 + 1)
    expired = healthcheck(short_lived)
    assert expired.returncode == 1 and "InvalidKeyException" in expired.stderr, expired.stderr
    # The API key does not expire: POST /token with it is how an operator revives the container.
    KeyRotator(short_lived.url("management"), short_lived.key_file, INTERVAL_S).rotate()
    assert healthcheck(short_lived).returncode == 0
