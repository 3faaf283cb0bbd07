"""The serving set-ups the benchmark compares, and the archives they need.

One TorchServe instance serves every configuration in turn: each is registered under its own name
with its batch size and delay (register parameters win over the archive's model-config.yaml), and
unregistered before the next. The worker count comes from the archive's yaml instead, because the
handler sizes its torch threads from maxWorkers (workers x threads <= cores).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tools.archive import DEFAULT_CONFIG, build_archive


@dataclass(frozen=True)
class ServeConfig:
    workers: int
    batch_size: int
    max_batch_delay: int

    @property
    def name(self) -> str:
        return f"b{self.batch_size}_w{self.workers}_d{self.max_batch_delay}"

    @property
    def threads(self) -> int:
        return max(1, cores() // self.workers)

    def label(self) -> str:
        return (f"TorchServe batch {self.batch_size}, {self.workers} worker"
                f"{'s' if self.workers > 1 else ''} x {self.threads} "
                f"thread{'s' if self.threads > 1 else ''}, "
                f"delay {self.max_batch_delay} ms")


# TorchServe 0.12 hands a worker whatever is queued at once and waits maxBatchDelay only for a
# batch that is not full (frontend Model.pollBatch), and with a delay of 0 it takes at most two:
# 2 ms fills batches under load and costs a lone request 2 ms, 20 ms costs it 20.
FULL_CONFIGS = (
    ServeConfig(workers=1, batch_size=1, max_batch_delay=0),
    ServeConfig(workers=2, batch_size=1, max_batch_delay=0),
    ServeConfig(workers=1, batch_size=8, max_batch_delay=2),
    ServeConfig(workers=1, batch_size=8, max_batch_delay=20),
    ServeConfig(workers=2, batch_size=8, max_batch_delay=2),
    ServeConfig(workers=2, batch_size=8, max_batch_delay=20),
)
QUICK_CONFIGS = (
    ServeConfig(workers=1, batch_size=1, max_batch_delay=0),
    ServeConfig(workers=2, batch_size=8, max_batch_delay=2),
)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def archive_name(workers: int) -> str:
    return f"bench-w{workers}.mar"


def build_worker_archives(weights: Path, model_store: Path, worker_counts: set[int]) -> None:
    """``bench-w<N>.mar`` per worker count: the shipped model-config.yaml with N workers."""
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for workers in sorted(worker_counts):
        with tempfile.TemporaryDirectory(prefix="skin-bench-") as scratch:
            config = Path(scratch) / "model-config.yaml"
            config.write_text(yaml.safe_dump({**shipped, "minWorkers": workers,
                                              "maxWorkers": workers}))
            built = build_archive(weights=weights, export_path=Path(scratch), config_file=config,
                                  model_name="skin")
            shutil.move(built, model_store / archive_name(workers))
