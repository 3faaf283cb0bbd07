"""Where a lone photo's time goes: requests sent one at a time to a running TorchServe, each taken
apart with TorchServe's own counters and the handler's timings.

    python -m bench.request_profile            # against `make serve` (make profile)

For each request: the client's wall time; TorchServe's time from arrival to answer and the part
of it spent queued (its cumulative latency counters, scraped before and after); the worker's
PredictionTime; and the handler's timing of each step (decode, framing, task network, the gate's
network and its checks, building the answer). What is left between them is HTTP (client to
frontend), the frontend-to-worker hop (Java to the Python worker over its socket, and back) and
TorchServe's Python service around the handler. Prints the median of each part; medians do not
add up exactly to the median total.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import settings
from api.client import InferenceClient, inference_path
from api.keys import KeySource
from loadtest.images import at_size, default_image_dir, read_photos
from ops.metrics import scrape

# The handler's own timings, in the order a request meets them.
HANDLER_STEPS = {"SkinDecodeMs": "decode the photo", "SkinFrameMs": "frame it for both networks",
                 "SkinForwardMs": "task network and softmax",
                 "SkinGateNetworkMs": "gate: its network (after the task network's) and the distances",
                 "SkinGateChecksMs": "gate: size, light, focus and distance checks",
                 "SkinAnswerMs": "build the answer"}
SERVICE = "TorchServe's Python service around the handler"
QUEUE = "queued in TorchServe (maxBatchDelay included)"
HOP = "frontend to worker and back (socket, Java)"
HTTP = "HTTP, client to frontend and back"
TOTAL = "total, as the client sees it"
# Metrics reach TorchServe's endpoint through the worker's log stream, a moment after the answer.
SETTLE_S = 2.0


def request_parts(before: dict[str, float], after: dict[str, float], client_ms: float) -> dict[str, float]:
    """One request's parts in ms, from the model's metrics scraped before and after it."""
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    frontend_ms = delta("ts_inference_latency_microseconds_total") / 1000
    queue_ms = delta("ts_queue_latency_microseconds_total") / 1000
    prediction_ms = after["PredictionTime"]
    steps = {label: after[name] for name, label in HANDLER_STEPS.items()}
    return {**steps, SERVICE: prediction_ms - sum(steps.values()), QUEUE: queue_ms,
            HOP: frontend_ms - queue_ms - prediction_ms, HTTP: client_ms - frontend_ms, TOTAL: client_ms}


def settled(read: Callable[[], dict[str, float]], before: dict[str, float]) -> dict[str, float]:
    """The model's metrics once this request's have all arrived: one more image handled, and a
    PredictionTime reported after it (the worker reports that last)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        after = read()
        handled = after.get("SkinImagesHandled_total", 0) > before.get("SkinImagesHandled_total", 0)
        requests_done = after.get("ts_inference_requests_total", 0) > before.get("ts_inference_requests_total", 0)
        if (handled and requests_done) or time.monotonic() > deadline:
            return after
        time.sleep(0.02)


def profile(send: Callable[[bytes], dict], metrics_url: str, model: str, images: list[bytes],
            requests: int, warmup: int = 5) -> dict[str, float]:
    """The median of each part over ``requests`` lone requests, after ``warmup`` unmeasured ones."""
    def read() -> dict[str, float]:
        return scrape(metrics_url)[1].get(model, {})

    for image in images[:warmup]:
        send(image)
    parts: list[dict[str, float]] = []
    for index in range(requests):
        image = images[index % len(images)]
        time.sleep(0.1)  # let the last request's metrics land before the "before" scrape
        before = read()
        started = time.perf_counter()
        send(image)
        client_ms = (time.perf_counter() - started) * 1000
        parts.append(request_parts(before, settled(read, before), client_ms))
    return {name: statistics.median(part[name] for part in parts) for name in parts[0]}


def format_profile(medians: dict[str, float], title: str) -> str:
    lines = [title, "", "| part of one request | median ms |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in medians.items() if name != TOTAL]
    lines.append(f"| **{TOTAL}** | **{medians[TOTAL]:.2f}** |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.request_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="skin")
    parser.add_argument("--inference-url", default=settings.INFERENCE_URL)
    parser.add_argument("--metrics-url", default=settings.METRICS_URL)
    parser.add_argument("--key-file", type=Path, default=settings.KEY_FILE,
                        help="TorchServe's key_file.json (default: %(default)s, from make serve)")
    parser.add_argument("--images", type=Path, help="JPEG folder (default: HAM10000 if present)")
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT the photos are sent at")
    parser.add_argument("--requests", type=int, default=40)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    width, height = (int(side) for side in args.size.split("x"))
    images = [data for _, data in at_size(read_photos(args.images, 16), (width, height))]
    client = InferenceClient(args.inference_url + inference_path("v1", args.model), KeySource(args.key_file))
    medians = profile(client.predict, args.metrics_url, args.model, images, args.requests)
    print(format_profile(medians, f"{args.requests} lone requests to {args.model}, {args.size} JPEGs "
                                  f"from {args.images or default_image_dir()}"))
    return medians


if __name__ == "__main__":
    main()
