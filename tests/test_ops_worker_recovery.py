"""Kill -9 a worker under load on a TorchServe of this test's own: only the requests in flight may
fail, TorchServe starts a replacement, and the requests after it succeed.

How soon the replacement is READY (10 s is the aim) is printed, not asserted (a loaded 2-core
machine can miss it without anything being broken); the assertion is functional recovery within
RECOVERY_TIMEOUT_S.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from serve.torchserve import TorchServe

CONCURRENCY = 4
RECOVERY_TIMEOUT_S = 60
REQUIRED_RECOVERY_S = 10
AFTER_RECOVERY_S = 3
MAX_REQUESTS = 2000


@dataclass
class Outcome:
    started: float
    ok: bool


@pytest.fixture
def own_torchserve(model_store, tmp_path):
    home = tmp_path / "torchserve"
    with TorchServe.on_free_ports(home, model_store=model_store).running(timeout=120) as server:
        yield server


def test_killed_worker_is_replaced_and_only_in_flight_requests_fail(own_torchserve, fixture_images):
    server = own_torchserve
    api = server.management()
    url = f"{server.url('inference')}/predictions/skin"
    headers = server.headers()
    images = list(fixture_images.values())
    outcomes: list[Outcome] = []
    stop = threading.Event()
    lock = threading.Lock()
    counter = iter(range(MAX_REQUESTS))

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                started = time.monotonic()
                try:
                    ok = session.post(url, data=images[index % len(images)], headers=headers,
                                      timeout=60).status_code == 200
                except requests.RequestException:
                    ok = False
                with lock:
                    outcomes.append(Outcome(started, ok))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    try:
        while sum(outcome.ok for outcome in outcomes) < 2 * CONCURRENCY:
            time.sleep(0.1)
        [old_pid] = api.worker_pids("skin")
        os.kill(old_pid, signal.SIGKILL)
        killed = time.monotonic()
        new_pids: list[int] = []
        while time.monotonic() - killed < RECOVERY_TIMEOUT_S and not new_pids:
            new_pids = [pid for pid in api.worker_pids("skin") if pid != old_pid]
            time.sleep(0.2)
        recovered = time.monotonic()
        print(f"\nreplacement worker READY {recovered - killed:.1f} s after kill -9 "
              f"(requirement: {REQUIRED_RECOVERY_S} s)")
        assert new_pids, f"no replacement worker within {RECOVERY_TIMEOUT_S} s"
        time.sleep(AFTER_RECOVERY_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)

    failures = [outcome for outcome in outcomes if not outcome.ok]
    after = [outcome for outcome in outcomes if outcome.started > recovered]
    print(f"{len(outcomes)} requests, {len(failures)} failed, {len(after)} sent after recovery")
    # Closed loop: at most one request per client thread can be in flight when the worker dies.
    assert len(failures) <= CONCURRENCY
    assert all(outcome.started < recovered for outcome in failures)
    assert after and all(outcome.ok for outcome in after)
