"""A closed loop: N threads, each with its own client, sending images back to back for a bounded
time and count, checking every answer against the contract like the load test does. TorchServe is
reached through the API client (api.client.InferenceClient), as the page reaches it.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from api.problems import ServerProblem
from contract.checks import check_prediction

# Sends one image and returns the answer's body; raises ServerProblem (or ValueError) on failure.
Send = Callable[[bytes], dict]
# Makes one thread's sender, with a connection of its own.
SenderFactory = Callable[[], Send]


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q) - 1]


def drive(sender: SenderFactory, images: list[bytes], concurrency: int, duration_s: float,
          max_requests: int, pause_s: float = 0.0) -> LoadResult:
    """Keep ``concurrency`` requests in flight until ``duration_s`` or ``max_requests`` is reached;
    each thread idles ``pause_s`` before each request, outside its latency."""
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + duration_s

    def worker() -> None:
        send = sender()
        while time.perf_counter() < deadline:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            time.sleep(pause_s)
            tick = time.perf_counter()
            try:
                check_prediction(send(images[index % len(images)]))
            except (ServerProblem, ValueError) as exc:
                with lock:
                    result.errors.append(str(exc)[:200])
                continue
            elapsed_ms = (time.perf_counter() - tick) * 1000
            with lock:
                result.latencies_ms.append(elapsed_ms)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - started
    return result
