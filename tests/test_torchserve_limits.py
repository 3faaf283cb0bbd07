"""TorchServe's memory is bounded: the request size, the queue and the JVM's heap agree; a flood of
requests gets 503s from a full queue, not an out-of-memory, and the server serves again after it;
the workflow API has an empty store of its own."""
from __future__ import annotations

import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import requests
from PIL import Image

import settings
from serve.torchserve import read_properties
from tools.deploy_config import container_properties, kserve_properties

MiB = 2**20
# Decoding a 3000x3000 PNG takes the handler about 0.1 s, so the test's one worker drains the queue
# far more slowly than a burst of requests fills it; its body stays under a megabyte.
SLOW_SIDE = 3000
FLOOD_TIMEOUT_S = 120


def heap_bytes(vmargs: str) -> int:
    size, unit = re.search(r"-Xmx(\d+)([kmgKMG])", vmargs).groups()
    return int(size) * {"k": 2**10, "m": 2**20, "g": 2**30}[unit.lower()]


def slow_png() -> bytes:
    blocks = np.random.default_rng(0).integers(0, 256, (SLOW_SIDE // 8, SLOW_SIDE // 8, 3), np.uint8)
    image = Image.fromarray(blocks).resize((SLOW_SIDE, SLOW_SIDE), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def test_the_queue_full_of_the_largest_bodies_fits_in_half_the_heap():
    base = read_properties(settings.TORCHSERVE_CONFIG)
    request_size, queue = int(base["max_request_size"]), int(base["job_queue_size"])
    assert 12_000_000 <= request_size <= 16 * MiB, "a 12 MB photo fits; little more does"
    assert 32 <= queue <= 64
    for properties in (base, container_properties(), kserve_properties("{}")):
        assert "-XX:+ExitOnOutOfMemoryError" in properties["vmargs"]
        assert queue * request_size <= heap_bytes(properties["vmargs"]) // 2


def test_the_jvm_runs_with_the_configured_heap(torchserve):
    [java] = [process for process in psutil.Process(torchserve.process.pid).children(recursive=True)
              if process.name() == "java"]
    vmargs = read_properties(settings.TORCHSERVE_CONFIG)["vmargs"].split()
    assert all(argument in java.cmdline() for argument in vmargs)


def test_a_flood_gets_503s_from_the_full_queue_and_the_server_recovers(torchserve, fixture_images):
    queue = int(read_properties(torchserve.home / "config.properties")["job_queue_size"])
    java = [process for process in psutil.Process(torchserve.process.pid).children(recursive=True)
            if process.name() == "java"]
    body, url, headers = slow_png(), torchserve.inference_url(), torchserve.headers()
    # All at once: four times what the queue holds, far more than the worker drains meanwhile.
    senders = 4 * queue
    start = threading.Barrier(senders)

    def send(_: int) -> int:
        start.wait()
        return requests.post(url, data=body, headers=headers, timeout=FLOOD_TIMEOUT_S).status_code

    with ThreadPoolExecutor(max_workers=senders) as pool:
        statuses = list(pool.map(send, range(senders)))
    print(f"\nflood of {senders}: {statuses.count(200)} served, {statuses.count(503)} refused with 503")
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) > 0, "the queue never filled"
    assert statuses.count(200) >= queue, "fewer served than the queue holds"
    assert all(process.is_running() for process in java), "the JVM died"
    answer = requests.post(url, data=fixture_images["NV_ISIC_0024306.jpg"], headers=headers,
                           timeout=60)
    assert answer.status_code == 200, answer.text
    logs = "".join(path.read_text(errors="replace") for path in (torchserve.home / "logs").glob("*.log"))
    assert "OutOfMemoryError" not in logs


def test_the_workflow_api_finds_nothing_in_its_own_store(torchserve):
    answer = requests.post(f"{torchserve.url('management')}/workflows", timeout=60,
                           params={"url": "skin.mar", "workflow_name": "w"},
                           headers=torchserve.headers("management"))
    # With the model store as its store it would open skin.mar (and fail with a 500 on its format).
    assert answer.status_code == 404 and "not found in workflow store" in answer.json()["message"]
    store = torchserve.home / read_properties(torchserve.home / "config.properties")["workflow_store"]
    assert store.is_dir() and not any(store.iterdir())
