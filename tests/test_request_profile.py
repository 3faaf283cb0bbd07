"""A lone request through a real TorchServe, taken apart into the handler's steps and what
TorchServe adds around them."""
from __future__ import annotations

from api.client import InferenceClient, inference_path
from api.keys import KeySource
from bench.request_profile import HANDLER_STEPS, HOP, HTTP, QUEUE, SERVICE, TOTAL, format_profile, profile


def test_a_lone_request_is_taken_apart_into_steps_that_add_up(torchserve, fixture_images) -> None:
    client = InferenceClient(torchserve.url("inference") + inference_path("v1"), KeySource(torchserve.key_file))
    medians = profile(client.predict, torchserve.url("metrics"), "skin", list(fixture_images.values()),
                      requests=6, warmup=2)

    assert list(medians) == [*HANDLER_STEPS.values(), SERVICE, QUEUE, HOP, HTTP, TOTAL]
    # Each step was timed on this very request: a stale or missing gauge would break these.
    assert all(medians[step] > 0 for step in HANDLER_STEPS.values())
    assert medians[HOP] > 0 and medians[HTTP] > 0 and medians[QUEUE] >= 0
    assert medians[SERVICE] > -0.1  # PredictionTime is reported to 0.01 ms
    assert medians[TOTAL] > sum(medians[step] for step in HANDLER_STEPS.values())
    table = format_profile(medians, "title")
    assert "| decode the photo |" in table and f"| **{TOTAL}** |" in table
