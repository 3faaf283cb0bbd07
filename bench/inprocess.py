"""The limit: the handler's own decoding, transform and model, batched, in this process, no HTTP."""
from __future__ import annotations

import statistics
import threading
import time

import torch

from bench.configs import cores
from handler.preprocessing import decode_image, eval_transform, input_shape, model_input


def classify(model: torch.nn.Module, metadata: dict, images: list[bytes]) -> torch.Tensor:
    """What one TorchServe batch costs the worker: decode, frame, colour-correct and normalise,
    forward, softmax."""
    batch = torch.stack([frame(metadata, data) for data in images])
    with torch.inference_mode():
        logits = model(served_input(metadata, batch))
    return torch.softmax(logits / float(metadata["temperature"]), dim=1)


def frame(metadata: dict, image: bytes) -> torch.Tensor:
    """The handler's decode and framing at the release's input size (uint8 CHW)."""
    size = input_shape(metadata["input_size"])
    return eval_transform(decode_image(image, draft_size=max(size)), size)


def served_input(metadata: dict, batch: torch.Tensor) -> torch.Tensor:
    return model_input(batch, bool(metadata.get("colour_constancy")), tuple(metadata["mean"]),
                       tuple(metadata["std"]))


def measure_limit(model: torch.nn.Module, metadata: dict, images: list[bytes], batch_size: int,
                  duration_s: float, streams: int) -> float:
    """Images/s with ``streams`` threads classifying batches side by side, torch threads shared.

    Pillow and torch release the GIL, so N streams with 1 torch thread each behave like N worker
    processes; 1 stream with N torch threads is the other way to fill N cores.
    """
    torch.set_num_threads(max(1, cores() // streams))
    classify(model, metadata, images[:batch_size])  # first call allocates; not part of the figure
    done = [0] * streams
    deadline = time.perf_counter() + duration_s

    def stream(index: int) -> None:
        position = index * batch_size
        while time.perf_counter() < deadline:
            classify(model, metadata, [images[(position + i) % len(images)]
                                       for i in range(batch_size)])
            position += streams * batch_size
            done[index] += batch_size

    started = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(index,)) for index in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def model_only_latency(model: torch.nn.Module, metadata: dict, image: bytes, threads: int,
                       duration_s: float) -> float:
    """p50 milliseconds of one already-decoded image's forward pass with ``threads`` threads."""
    torch.set_num_threads(threads)
    one = served_input(metadata, frame(metadata, image).unsqueeze(0))
    timings = []
    with torch.inference_mode():
        model(one)
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline or len(timings) < 5:
            tick = time.perf_counter()
            model(one)
            timings.append((time.perf_counter() - tick) * 1000)
    return statistics.median(timings)
