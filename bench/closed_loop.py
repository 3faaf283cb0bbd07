"""A closed-loop HTTP client: N threads, each with its own connection, sending images back to back
for a bounded time and count, checking every answer like the load test does.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from contract.checks import check_prediction

# Sends one image over a session and returns the response.
Sender = Callable[[requests.Session, bytes], requests.Response]


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


def drive(send: Sender, images: list[bytes], concurrency: int, duration_s: float,
          max_requests: int) -> LoadResult:
    """Keep ``concurrency`` requests in flight until ``duration_s`` or ``max_requests`` is reached."""
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + duration_s

    def worker() -> None:
        with requests.Session() as session:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                tick = time.perf_counter()
                try:
                    response = send(session, images[index % len(images)])
                    response.raise_for_status()
                    check_prediction(response.json())
                except (requests.RequestException, ValueError) as exc:
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
