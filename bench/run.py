"""``python -m bench``: one run, same images, same weights, three ways of serving them.

(a) the limit: the handler's preprocessing and model in this process, batched, no HTTP;
(b) TorchServe with our handler, batch 1 and 8, 1 and 2 workers (workers x threads <= cores);
(c) a minimal single-process Flask app (bench/flask_baseline.py), batch 1.
Prints a table (img/s, p50, p99 at a fixed concurrency, single-request p50) and the ratios the
issue targets; a full run writes the best TorchServe set-up back as the shipped defaults.
``--quick`` runs two TorchServe set-ups for a few seconds each (for the tests).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import requests
import torch

from bench.client import LoadResult, Sender, drive
from bench.configs import FULL_CONFIGS, QUICK_CONFIGS, ServeConfig, archive_name, \
    build_worker_archives, cores
from bench.inprocess import measure_limit, model_only_latency
from bench.report import Row, best_served, format_ratios, format_table, ratios
from bench.write_back import write_back
from handler.checkpoint import WEIGHTS_FILE, load_release
from loadtest.images import default_image_dir, load_images
from ops.management import Management
from tools.archive import MODEL_STORE
from tools.torchserve import REPO, TorchServe, free_port

LIMIT_BATCH = 8
# Bounds every closed loop in count as well as time.
MAX_REQUESTS_PER_S = 2000
FLASK_START_S = 120


def measured_row(label: str, loaded: LoadResult, single: LoadResult,
                 config: ServeConfig | None = None) -> Row:
    return Row(label=label, images_per_s=loaded.images_per_s, p50_ms=loaded.percentile(50),
               p99_ms=loaded.percentile(99), single_p50_ms=single.percentile(50),
               errors=len(loaded.errors) + len(single.errors), config=config)


def measure(send: Sender, images: list[bytes],
            args: argparse.Namespace) -> tuple[LoadResult, LoadResult]:
    """Warm up, then the loaded run at ``--concurrency``, then requests one at a time."""
    drive(send, images, args.concurrency, args.warmup, args.warmup * MAX_REQUESTS_PER_S)
    loaded = drive(send, images, args.concurrency, args.duration, args.duration * MAX_REQUESTS_PER_S)
    single = drive(send, images, 1, args.single, args.single * MAX_REQUESTS_PER_S)
    return loaded, single


def bench_torchserve(configs: tuple[ServeConfig, ...], weights: Path, images: list[bytes],
                     args: argparse.Namespace, work: Path) -> list[Row]:
    store = work / "model_store"
    store.mkdir()
    build_worker_archives(weights, store, {config.workers for config in configs})
    server = TorchServe.on_free_ports(work / "torchserve", model_store=store, models="")
    server.start()
    rows = []
    try:
        # No model at start-up: wait for the management API instead of a READY worker.
        api = Management(url=server.url("management"), key_file=server.key_file)
        wait_for(lambda: api.models() is not None, "TorchServe", 120)
        for config in configs:
            print(f"  {config.label()} ...", flush=True)
            api.register(archive_name(config.workers), config.batch_size, config.max_batch_delay,
                         config.workers, name=config.name)
            url = f"{server.url('inference')}/predictions/{config.name}"
            headers = {**server.headers("inference"), "Content-Type": "image/jpeg"}

            def send(session: requests.Session, image: bytes) -> requests.Response:
                return session.post(url, data=image, headers=headers, timeout=60)

            rows.append(measured_row(config.label(), *measure(send, images, args), config=config))
            api.unregister(config.name)
    finally:
        server.stop()
    return rows


def bench_flask(weights: Path, images: list[bytes], args: argparse.Namespace) -> Row:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.flask_baseline", "--weights",
                                str(weights), "--port", str(port)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/health", timeout=2).ok, "the Flask baseline",
                 FLASK_START_S)

        def send(session: requests.Session, image: bytes) -> requests.Response:
            return session.post(f"{base}/predict", files={"file": ("image.jpg", image, "image/jpeg")},
                                timeout=60)

        return measured_row("Flask baseline, 1 process, batch 1", *measure(send, images, args))
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for(ready, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 (anything short of an answer means "not up yet")
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout_s:.0f}s")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    memory_gib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal")) / 2**20
    return (f"{cpu}, {cores()} cores, {memory_gib:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=MODEL_STORE / WEIGHTS_FILE,
                        help="release weights, metadata JSON beside them (default: %(default)s)")
    parser.add_argument("--images", type=Path, help="JPEG folder (default: HAM10000 if present)")
    parser.add_argument("--image-count", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="two set-ups, a few seconds each")
    parser.add_argument("--no-write-back", action="store_true",
                        help="leave handler/model-config.yaml and config.properties alone")
    parser.add_argument("--out", type=Path, help="results folder (default: reports/bench-<time>)")
    args = parser.parse_args()
    args.duration, args.warmup, args.single = (3, 1, 2) if args.quick else (20, 5, 8)
    if not args.weights.exists():
        parser.error(f"{args.weights} not found: pass --weights (a release written by training)")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(cores())
    out = args.out or REPO / "reports" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    images = [data for _, data in load_images(args.images, args.image_count)]
    image_dir = args.images or default_image_dir()
    print(f"machine: {machine()}\nweights: {args.weights}\nimages: {len(images)} from {image_dir}",
          flush=True)

    print("in-process limit ...", flush=True)
    model, metadata = load_release(args.weights)
    rows = []
    for streams in sorted({1, cores()}):
        rows.append(Row(label=f"in-process limit: handler preprocessing + model, batch "
                              f"{LIMIT_BATCH}, {streams} stream{'s' if streams > 1 else ''} x "
                              f"{cores() // streams} thread{'s' if cores() > streams else ''}",
                        images_per_s=measure_limit(model, metadata, images, LIMIT_BATCH,
                                                   args.duration, streams)))
    model_only = {threads: model_only_latency(model, metadata, images[0], threads, args.single)
                  for threads in sorted({1, cores()})}
    del model  # its memory is better left to the servers measured next
    limit = max(rows, key=lambda row: row.images_per_s)
    with tempfile.TemporaryDirectory(prefix="skin-bench-") as work:
        rows += bench_torchserve(QUICK_CONFIGS if args.quick else FULL_CONFIGS, args.weights,
                                 images, args, Path(work))
    print("Flask baseline ...", flush=True)
    flask = bench_flask(args.weights, images, args)
    rows.append(flask)

    best = best_served(rows)
    values = ratios(limit, model_only[cores()], flask, best)
    table = format_table(rows, args.concurrency)
    summary = format_ratios(values, best, model_only)
    print(f"\n{table}\n\n{summary}")
    (out / "table.md").write_text(f"{table}\n\n{summary}\n")
    (out / "results.json").write_text(json.dumps({
        "machine": machine(), "weights": str(args.weights), "model_version": metadata["version"],
        "input_size": metadata["input_size"], "images": str(image_dir), "quick": args.quick,
        "concurrency": args.concurrency, "model_only_p50_ms": model_only,
        "rows": [{**asdict(row), "config": asdict(row.config) if row.config else None}
                 for row in rows],
        "ratios": values}, indent=2) + "\n")
    if not args.quick and not args.no_write_back:
        write_back(best.config)
        print(f"wrote {best.config.name} back into handler/model-config.yaml and config.properties")
    print(f"results in {out}")
