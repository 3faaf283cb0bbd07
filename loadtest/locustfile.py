"""Locust users that post real dermoscopy images to SKIN and check every answer, in either protocol.

Run through ``python -m loadtest``, which sets these environment variables:
SKIN_KEY_FILE (TorchServe's key_file.json), SKIN_TOKEN (a bearer token that replaces the key file,
e.g. the ingress's in a cluster), SKIN_HOST_HEADER (a Host header, for an ingress reached through a
port-forward), SKIN_PROTOCOL (v1: the image as the body of /predictions/<model>; v2: the Open
Inference Protocol at /v2/models/<model>/infer), SKIN_IMAGE_DIR, SKIN_MAX_REQUESTS (stop after this many
requests, per locust process), SKIN_RATE_PER_USER (requests/s per user; unset means as fast as answers come),
SKIN_MODEL (default skin), SKIN_TOTALS_FILE (where the final totals are written as JSON: locust's
_stats.csv is rewritten once a second and misses requests that end while users stop).
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import gevent
from locust import HttpUser, constant, constant_throughput, events, task
from locust.runners import WorkerRunner

from api.client import inference_path, protocol_from_env
from api.keys import KeySource
from api.problems import key_refused
from contract import v2
from contract.checks import check_prediction
from loadtest.images import read_photos

IMAGES = read_photos(Path(os.environ["SKIN_IMAGE_DIR"]) if os.environ.get("SKIN_IMAGE_DIR") else None)
MODEL = os.environ.get("SKIN_MODEL", "skin")
PROTOCOL = protocol_from_env()
PATH = inference_path(PROTOCOL, MODEL)
MAX_REQUESTS = int(os.environ.get("SKIN_MAX_REQUESTS", "50000"))
RATE_PER_USER = float(os.environ.get("SKIN_RATE_PER_USER", "0"))
# Users share one rotation, so each image is sent equally often whatever the user count.
_next_image = itertools.cycle(IMAGES).__next__
_sent = itertools.count(1)


@events.init.add_listener
def bound_request_count(environment, **_kwargs) -> None:
    """End the run after MAX_REQUESTS requests, whatever --run-time says."""

    @environment.events.request.add_listener
    def stop_after_max_requests(**_request) -> None:
        if next(_sent) == MAX_REQUESTS:
            # From a greenlet of its own: quitting stops the user greenlet that is running this.
            gevent.spawn(environment.runner.quit)


@events.quitting.add_listener
def write_totals(environment, **_kwargs) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # with --processes, only the master holds the totals of all processes
    total = environment.stats.total
    totals = {"requests": total.num_requests, "failures": total.num_failures,
              "requests_per_s": total.total_rps, "mean_ms": total.avg_response_time,
              "max_ms": total.max_response_time}
    for percentile in (50, 95, 99):
        totals[f"p{percentile}_ms"] = (total.get_response_time_percentile(percentile / 100)
                                       if total.num_requests else None)
    Path(os.environ["SKIN_TOTALS_FILE"]).write_text(json.dumps(totals))


class SkinUser(HttpUser):
    wait_time = constant_throughput(RATE_PER_USER) if RATE_PER_USER > 0 else constant(0)

    def on_start(self) -> None:
        self.keys = KeySource(Path(os.environ["SKIN_KEY_FILE"]), "inference",
                              os.environ.get("SKIN_TOKEN") or None)
        if os.environ.get("SKIN_HOST_HEADER"):
            self.client.headers["Host"] = os.environ["SKIN_HOST_HEADER"]

    @task
    def classify(self) -> None:
        _name, image = _next_image()
        # The key source re-reads a rotated key file before the request; a refusal that still
        # comes (the file was being rewritten) counts, and the next request reads the file again.
        headers = {**self.keys.headers(), **({} if PROTOCOL == "v2" else {"Content-Type": "image/jpeg"})}
        body = {"json": v2.request(image)} if PROTOCOL == "v2" else {"data": image}
        with self.client.post(PATH, name=PATH, catch_response=True, headers=headers, **body) as response:
            if key_refused(response):
                self.keys.refresh(wait_s=0)
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                answer = response.json()
                check_prediction(v2.answer_from_response(answer) if PROTOCOL == "v2" else answer)
            except ValueError as exc:
                response.failure(str(exc))
