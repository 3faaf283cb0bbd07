"""The limit: the handler's own decoding, transform and model, batched, in this process, no HTTP."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from handler.checkpoint import METADATA_FILE, load_metadata
from handler.model import SkinResNet34
from handler.preprocessing import decode_image, eval_transform, normalize


def load_model(weights: Path) -> tuple[torch.nn.Module, dict]:
    """The release as the handler loads it: fp16 weights into a float32 model, in eval mode."""
    model = SkinResNet34()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), load_metadata(weights.with_name(METADATA_FILE))


def classify(model: torch.nn.Module, metadata: dict, images: list[bytes]) -> torch.Tensor:
    """What one TorchServe batch costs the worker: decode, transform, normalise, forward, softmax."""
    size = int(metadata["input_size"])
    batch = torch.stack([eval_transform(decode_image(data, draft_size=size), size) for data in images])
    with torch.inference_mode():
        logits = model(normalize(batch))
    return torch.softmax(logits / float(metadata["temperature"]), dim=1)


@dataclass
class InProcessResult:
    images_per_s: float
    model_only_p50_ms: float


def measure_limit(model: torch.nn.Module, metadata: dict, images: list[bytes], batch_size: int,
                  duration_s: float) -> InProcessResult:
    """Batched throughput over ``duration_s``, and the p50 of a single image's forward pass."""
    size = int(metadata["input_size"])
    classify(model, metadata, images[:batch_size])  # first call allocates; not part of the figure
    done, position, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < duration_s:
        chunk = [images[(position + i) % len(images)] for i in range(batch_size)]
        classify(model, metadata, chunk)
        position, done = position + batch_size, done + batch_size
    images_per_s = done / (time.perf_counter() - started)

    one = normalize(eval_transform(decode_image(images[0], draft_size=size), size).unsqueeze(0))
    timings = []
    with torch.inference_mode():
        model(one)
        deadline = time.perf_counter() + max(1.0, duration_s / 3)
        while time.perf_counter() < deadline or len(timings) < 5:
            tick = time.perf_counter()
            model(one)
            timings.append((time.perf_counter() - tick) * 1000)
    return InProcessResult(images_per_s, statistics.median(timings))
