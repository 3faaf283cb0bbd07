"""The limit: the handler's own decoding, transform and model at a precision, batched, in this
process, no HTTP."""
from __future__ import annotations

import statistics
import threading
import time

import torch

from bench.configs import cores
from handler.precision import Runner
from handler.preprocessing import decode_image, eval_transform, input_shape, release_input


def classify(run: Runner, metadata: dict, images: list[bytes]) -> torch.Tensor:
    """What one TorchServe batch costs the worker: decode, frame, colour-correct and normalise,
    forward (features and logits, as the gate needs them), softmax."""
    batch = torch.stack([frame(metadata, data) for data in images])
    _, logits = run(release_input(batch, metadata))
    return torch.softmax(logits / float(metadata["temperature"]), dim=1)


def frame(metadata: dict, image: bytes) -> torch.Tensor:
    """The handler's decode and framing at the release's input size (uint8 CHW)."""
    size = input_shape(metadata["input_size"])
    return eval_transform(decode_image(image, draft_size=max(size)), size)


def measure_limit(run: Runner, metadata: dict, images: list[bytes], batch_size: int,
                  duration_s: float, streams: int) -> float:
    """Images/s with ``streams`` threads classifying batches side by side, torch threads shared.

    Pillow and torch release the GIL, so N streams with 1 torch thread each behave like N worker
    processes; 1 stream with N torch threads is the other way to fill N cores.
    """
    torch.set_num_threads(max(1, cores() // streams))
    classify(run, metadata, images[:batch_size])  # first call allocates; not part of the figure
    done = [0] * streams
    deadline = time.perf_counter() + duration_s

    def stream(index: int) -> None:
        position = index * batch_size
        while time.perf_counter() < deadline:
            classify(run, metadata, [images[(position + i) % len(images)]
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


def model_only_latency(run: Runner, metadata: dict, image: bytes, threads: int,
                       duration_s: float) -> float:
    """p50 milliseconds of one already-decoded image's forward pass with ``threads`` threads."""
    torch.set_num_threads(threads)
    one = release_input(frame(metadata, image).unsqueeze(0), metadata)
    run(one)
    return _median_ms(lambda: run(one), duration_s)


def decode_latency(metadata: dict, image: bytes, duration_s: float) -> float:
    """p50 milliseconds to decode one photo and turn it into the network's input, as the handler
    does (JPEG draft mode, framing, colour constancy, normalisation), on one thread."""
    torch.set_num_threads(1)
    return _median_ms(lambda: release_input(frame(metadata, image).unsqueeze(0), metadata), duration_s)


def _median_ms(step, duration_s: float) -> float:
    timings = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline or len(timings) < 5:
        tick = time.perf_counter()
        step()
        timings.append((time.perf_counter() - tick) * 1000)
    return statistics.median(timings)
