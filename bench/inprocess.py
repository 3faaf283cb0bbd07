"""The limit: the handler's own decoding, transform, model and gate at a precision, batched, in this
process, no HTTP; and what each of those steps costs."""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.configs import cores
from handler.gate import GATE_FILE, Gate, GateNetwork, load_gate
from handler.lite import installed_weights
from handler.preprocessing import eval_transform, frame_photo, release_input
from handler.runners import Runner
from imaging.decode import decode_image
from imaging.framing import input_shape


@dataclass(frozen=True)
class ReleaseGate:
    """A release's gate and its network, as a worker loads them."""

    gate: Gate
    network: GateNetwork

    @classmethod
    def beside(cls, weights: Path) -> ReleaseGate:
        return cls(*load_gate(weights.with_name(GATE_FILE), weights, installed_weights()))


def frames(metadata: dict, gate: ReleaseGate,
           image: bytes) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """The handler's decode and framing: the release's frame, the gate network's, and the decoded
    size."""
    size = input_shape(metadata["input_size"])
    photo = decode_image(image, draft_size=max(*size, *gate.network.input_size))
    return eval_transform(photo, size), gate.network.frame(photo), photo.size


def frame(metadata: dict, image: bytes) -> torch.Tensor:
    """The release's frame alone (uint8 CHW), for what needs no gate."""
    return frame_photo(image, metadata["input_size"])


def decode_step(metadata: dict, gate: ReleaseGate, images: list[bytes]
                ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    framed = [frames(metadata, gate, data) for data in images]
    return (torch.stack([f[0] for f in framed]), torch.stack([f[1] for f in framed]),
            [f[2] for f in framed])


def model_step(run: Runner, metadata: dict, batch: torch.Tensor) -> torch.Tensor:
    _, logits = run(release_input(batch, metadata))
    return torch.softmax(logits / float(metadata["temperature"]), dim=1)


def gate_step(gate: ReleaseGate, batch: torch.Tensor, gate_batch: torch.Tensor,
              sizes: list[tuple[int, int]]) -> list:
    distances = gate.gate.distances(gate.network(gate_batch)).tolist()
    return [gate.gate.check(f, size, distance) for f, size, distance in zip(batch, sizes, distances)]


def classify(run: Runner, gate: ReleaseGate, metadata: dict, images: list[bytes]) -> torch.Tensor:
    """What one TorchServe batch costs the worker: decode and frame for both networks, colour-
    correct and normalise, the task network's forward pass, softmax, and the gate's verdicts."""
    batch, gate_batch, sizes = decode_step(metadata, gate, images)
    probabilities = model_step(run, metadata, batch)
    gate_step(gate, batch, gate_batch, sizes)
    return probabilities


def measure_limit(run: Runner, gate: ReleaseGate, metadata: dict, images: list[bytes], batch_size: int,
                  duration_s: float, streams: int) -> float:
    """Images/s with ``streams`` threads classifying batches side by side, torch threads shared.

    Pillow and torch release the GIL, so N streams with 1 torch thread each behave like N worker
    processes; 1 stream with N torch threads is the other way to fill N cores.
    """
    torch.set_num_threads(max(1, cores() // streams))
    classify(run, gate, metadata, images[:batch_size])  # first call allocates; not part of the figure
    done = [0] * streams
    deadline = time.perf_counter() + duration_s

    def stream(index: int) -> None:
        position = index * batch_size
        while time.perf_counter() < deadline:
            classify(run, gate, metadata, [images[(position + i) % len(images)]
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


def step_costs(run: Runner, gate: ReleaseGate, metadata: dict, images: list[bytes], batch_size: int,
               duration_s: float) -> dict[str, float]:
    """CPU milliseconds per image of each step of a served batch, on one thread: decoding and
    framing, the task network, the gate (its network, the distances, the quality checks); and the
    gate's share of all three. CPU time, not wall time: on a shared machine it still says what the
    worker itself spends, which is what a served image costs on a busy server too."""
    torch.set_num_threads(1)
    spent = {"decode_ms": 0.0, "model_ms": 0.0, "gate_ms": 0.0}
    done, position = 0, 0
    classify(run, gate, metadata, images[:batch_size])
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline or done == 0:
        chosen = [images[(position + i) % len(images)] for i in range(batch_size)]
        position += batch_size
        tick = time.thread_time()
        batch, gate_batch, sizes = decode_step(metadata, gate, chosen)
        decoded = time.thread_time()
        model_step(run, metadata, batch)
        modelled = time.thread_time()
        gate_step(gate, batch, gate_batch, sizes)
        gated = time.thread_time()
        spent["decode_ms"] += decoded - tick
        spent["model_ms"] += modelled - decoded
        spent["gate_ms"] += gated - modelled
        done += batch_size
    costs = {name: seconds * 1000 / done for name, seconds in spent.items()}
    return costs | {"gate_share": costs["gate_ms"] / sum(costs.values())}


def model_only_latency(run: Runner, metadata: dict, image: bytes, threads: int,
                       duration_s: float, pause_s: float = 0.0) -> float:
    """p50 milliseconds of one already-decoded image's forward pass with ``threads`` threads;
    back to back, or ``pause_s`` apart, as a worker runs the forward passes of lone requests."""
    torch.set_num_threads(threads)
    one = release_input(frame(metadata, image).unsqueeze(0), metadata)
    run(one)
    return _median_ms(lambda: run(one), duration_s, pause_s)


def lone_photo_latency(run: Runner, gate: ReleaseGate, metadata: dict, image: bytes, duration_s: float,
                       pause_s: float, beside: bool) -> dict[str, float]:
    """p50 ms of one framed photo's task network (with softmax) and of it with the gate's network
    and distances, one thread each, ``pause_s`` apart as a worker runs lone requests; the gate's
    either ``beside`` the task network in a second thread, as the handler runs them when a core is
    spare, or after it."""
    torch.set_num_threads(1)
    batch, gate_batch, _ = decode_step(metadata, gate, [image])

    def gate_distances() -> torch.Tensor:
        return gate.gate.distances(gate.network(gate_batch))

    task, both = [], []
    with ThreadPoolExecutor(max_workers=1) as pool:
        model_step(run, metadata, batch)
        gate_distances()
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline or len(task) < 5:
            time.sleep(pause_s)
            tick = time.perf_counter()
            distances = pool.submit(gate_distances) if beside else None
            model_step(run, metadata, batch)
            task_done = time.perf_counter()
            if distances is None:
                gate_distances()
            else:
                distances.result()
            task.append((task_done - tick) * 1000)
            both.append((time.perf_counter() - tick) * 1000)
    return {"task_ms": statistics.median(task), "both_ms": statistics.median(both)}


def decode_latency(metadata: dict, image: bytes, duration_s: float) -> float:
    """p50 milliseconds to decode one photo and turn it into the network's input, as the handler
    does (JPEG draft mode, framing, colour constancy, normalisation), on one thread."""
    torch.set_num_threads(1)
    return _median_ms(lambda: release_input(frame(metadata, image).unsqueeze(0), metadata), duration_s)


def _median_ms(step, duration_s: float, pause_s: float = 0.0) -> float:
    timings = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline or len(timings) < 5:
        time.sleep(pause_s)
        tick = time.perf_counter()
        step()
        timings.append((time.perf_counter() - tick) * 1000)
    return statistics.median(timings)
