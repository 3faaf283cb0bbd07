"""``python -m bench``: one run, same images, same weights, three ways of serving them.

(a) the limit: the handler's preprocessing, model and gate in this process, batched, no HTTP, at
    each precision (fp32, bf16, int8, int8-7bit) and each image size (HAM10000's 200x150, 1024x768 as the page
    sends, 4000x3000 as a phone takes); the ratios use the served precision at 1024x768;
(b) TorchServe with our handler at the release's served precision, batch 1 and 8, 1 and 2 workers
    (workers x threads <= cores), at 1024x768; a full run repeats the best set-up at the other sizes;
(c) a minimal single-process Flask app (bench/flask_baseline.py), batch 1, fp32.
Also: the CPU and the flags that decide which precision is fast, decode + preprocessing cost per
image at each size, what each step of a served image costs and the gate's share of it, and cold
start to READY. Prints tables (img/s, p50, p99 at a fixed
concurrency, single-request p50 back to back and with the requests apart) and the ratios of TorchServe
to the in-process limit and to Flask;
writes the best TorchServe set-up, against the shipped one, to ``recommended.json`` for a person to
apply. ``--quick`` runs two TorchServe set-ups for a few
seconds each (for the tests).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import requests
import torch

import settings
from api.client import InferenceClient, inference_path
from api.keys import KeySource
from api.management import ManagementClient
from bench.closed_loop import LoadResult, Send, SenderFactory, drive
from bench.configs import FULL_CONFIGS, QUICK_CONFIGS, ServeConfig, archive_name, build_worker_archives, cores
from bench.inprocess import (
    ReleaseGate,
    decode_latency,
    lone_photo_latency,
    measure_limit,
    model_only_latency,
    step_costs,
)
from bench.recommendation import write_recommendation
from bench.request_profile import format_profile, profile
from bench.runners import precision_runners
from bench.tables import (
    Row,
    best_served,
    format_decode,
    format_limits,
    format_ratios,
    format_steps,
    format_table,
    ratios,
)
from handler.checkpoint import load_release
from handler.cpus import cpu_info
from handler.runners import PRECISIONS
from handler.served_precision import served_record
from loadtest.images import at_size, default_image_dir, read_photos
from serve.processes import stop_process
from serve.torchserve import TorchServe, free_port

LIMIT_BATCH = 8
# Lone requests taken apart for the best set-up: (full run, quick run).
PROFILE_REQUESTS = (40, 5)
# Bounds every closed loop in count as well as time.
MAX_REQUESTS_PER_S = 2000
FLASK_START_S = 120
# (width, height); None sends the files as stored. The ratios are taken at MAIN_SIZE.
IMAGE_SIZES = {"200x150": None, "1024x768": (1024, 768), "4000x3000": (4000, 3000)}
MAIN_SIZE = "1024x768"
# About what a lone request spends outside its task network (the profile's other parts): a worker's
# thread idles that long between the forward passes of requests sent one at a time.
LONE_PAUSE_S = 0.02
# A phone user's photos come seconds apart, and a worker that has idled that long may answer slower
# than one answering back to back: lone requests are also timed this far apart.
LONE_GAP_S = 0.5


def measured_row(label: str, loaded: LoadResult, single: LoadResult, spaced: LoadResult,
                 config: ServeConfig | None = None) -> Row:
    return Row(label=label, images_per_s=loaded.images_per_s, p50_ms=loaded.percentile(50),
               p99_ms=loaded.percentile(99), single_p50_ms=single.percentile(50),
               spaced_p50_ms=spaced.percentile(50),
               errors=len(loaded.errors) + len(single.errors) + len(spaced.errors), config=config)


def measure(sender: SenderFactory, images: list[bytes],
            args: argparse.Namespace) -> tuple[LoadResult, LoadResult, LoadResult]:
    """Warm up, then the loaded run at ``--concurrency``, then requests one at a time: back to
    back, and ``LONE_GAP_S`` apart."""
    drive(sender, images, args.concurrency, args.warmup, args.warmup * MAX_REQUESTS_PER_S)
    loaded = drive(sender, images, args.concurrency, args.duration, args.duration * MAX_REQUESTS_PER_S)
    single = drive(sender, images, 1, args.single, args.single * MAX_REQUESTS_PER_S)
    spaced = drive(sender, images, 1, args.single, args.single * MAX_REQUESTS_PER_S, LONE_GAP_S)
    return loaded, single, spaced


def bench_torchserve(configs: tuple[ServeConfig, ...], weights: Path, sized: dict[str, list[bytes]],
                     args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, float], float]:
    """Each set-up at MAIN_SIZE; in a full run the best one again at the other sizes. Also returns
    the best set-up's lone requests taken apart (bench.request_profile), and the seconds from
    starting TorchServe with its archive to its model READY."""
    store = work / "model_store"
    store.mkdir()
    build_worker_archives(weights, store, {config.workers for config in configs})
    server = TorchServe.on_free_ports(work / "torchserve", model_store=store, models="")
    server.start()
    rows = []
    try:
        # No model at start-up: wait for the management API instead of a READY worker.
        api = server.management()
        wait_for(lambda: api.models() is not None, "TorchServe", 120)
        for config in configs:
            rows.append(served_row(server, api, config, sized[MAIN_SIZE], MAIN_SIZE, args))
        best = best_served(rows)
        if not args.quick:
            rows += [served_row(server, api, best.config, images, size, args)
                     for size, images in sized.items() if size != MAIN_SIZE]
        parts = served_profile(server, api, best.config, sized[MAIN_SIZE], args)
    finally:
        server.stop()
    return rows, parts, cold_start(store, archive_name(best.config.workers), work / "cold")


def served_row(server: TorchServe, api: ManagementClient, config: ServeConfig, images: list[bytes],
               size: str, args: argparse.Namespace) -> Row:
    label = config.label() + ("" if size == MAIN_SIZE else f", {size} photos")
    print(f"  {label} ...", flush=True)
    api.register(archive_name(config.workers), config.batch_size, config.max_batch_delay,
                 config.workers, name=config.name)
    url = server.url("inference") + inference_path("v1", config.name)

    def sender() -> Send:
        return InferenceClient(url, KeySource(server.key_file)).predict

    try:
        return measured_row(label, *measure(sender, images, args),
                            config=config if size == MAIN_SIZE else None)
    finally:
        api.unregister(config.name)


def served_profile(server: TorchServe, api: ManagementClient, config: ServeConfig, images: list[bytes],
                   args: argparse.Namespace) -> dict[str, float]:
    print(f"  {config.label()}: lone requests taken apart ...", flush=True)
    api.register(archive_name(config.workers), config.batch_size, config.max_batch_delay,
                 config.workers, name=config.name)
    client = InferenceClient(server.url("inference") + inference_path("v1", config.name), KeySource(server.key_file))
    try:
        return profile(client.predict, server.url("metrics"), config.name, images, PROFILE_REQUESTS[args.quick])
    finally:
        api.unregister(config.name)


def cold_start(store: Path, archive: str, home: Path) -> float:
    """Seconds from launching TorchServe with ``archive`` to its first READY worker."""
    server = TorchServe.on_free_ports(home, model_store=store, models=f"skin={archive}")
    started = time.perf_counter()
    server.start()
    try:
        server.wait_ready("skin", timeout=120)
        return time.perf_counter() - started
    finally:
        server.stop()


def bench_flask(weights: Path, images: list[bytes], args: argparse.Namespace) -> Row:
    """The Flask baseline at MAIN_SIZE."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.flask_baseline", "--weights",
                                str(weights), "--port", str(port)], cwd=settings.REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/health", timeout=2).ok, "the Flask baseline",
                 FLASK_START_S)

        def sender() -> Send:
            session = requests.Session()

            def send(image: bytes) -> dict:
                try:
                    response = session.post(f"{base}/predict", timeout=60,
                                            files={"file": ("image.jpg", image, "image/jpeg")})
                    response.raise_for_status()
                except requests.RequestException as exc:
                    raise ValueError(f"the Flask baseline failed: {exc}") from None
                return response.json()
            return send

        return measured_row("Flask baseline, 1 process, batch 1", *measure(sender, images, args))
    finally:
        stop_process(process)


def wait_for(ready: Callable[[], bool], what: str, timeout_s: float) -> None:
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
    cpu = cpu_info()
    memory_gib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal")) / 2**20
    return (f"{cpu['model']}, {cores()} cores, {memory_gib:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}")


def cpu_flags() -> str:
    """The flags that decide which precision is fast, present and absent."""
    present = set(cpu_info()["flags"])
    return ", ".join(f"{flag} {'yes' if flag in present else 'no'}"
                     for flag in ("amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS,
                        help="release weights, metadata JSON beside them (default: %(default)s)")
    parser.add_argument("--images", type=Path, help="JPEG folder (default: HAM10000 if present)")
    parser.add_argument("--image-count", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="two set-ups, a few seconds each")
    parser.add_argument("--out", type=Path, help="results folder (default: reports/bench-<time>)")
    args = parser.parse_args()
    args.duration, args.warmup, args.single = (3, 1, 2) if args.quick else (20, 5, 8)
    if not args.weights.exists():
        parser.error(f"{args.weights} not found: pass --weights (a release written by training)")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(cores())
    out = args.out or settings.REPO / "reports" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    originals = read_photos(args.images, args.image_count)
    sized = {size: [data for _, data in at_size(originals, shape)] for size, shape in IMAGE_SIZES.items()}
    image_dir = args.images or default_image_dir()
    served = served_record(args.weights)
    print(f"machine: {machine()}\nCPU flags: {cpu_flags()}\nweights: {args.weights}\n"
          f"served precision: {served['precision']} ({served['source']})\n"
          f"images: {len(originals)} from {image_dir}, sent at {', '.join(sized)}", flush=True)

    model, metadata = load_release(args.weights)
    gate = ReleaseGate.beside(args.weights)
    runs, calibration = precision_runners(model, metadata, args.weights, sized[MAIN_SIZE][:32])
    print(f"int8 calibration: {calibration}\ndecode + preprocessing ...", flush=True)
    decode = {size: decode_latency(metadata, images[0], args.single) for size, images in sized.items()}
    print("in-process limit per precision and size ...", flush=True)
    limits = {precision: {size: measure_limit(runs[precision], gate, metadata, images, LIMIT_BATCH,
                                              args.duration, cores())
                          for size, images in sized.items()} for precision in PRECISIONS}
    print("cost of each step, served precision ...", flush=True)
    steps = step_costs(runs[served["precision"]], gate, metadata, sized[MAIN_SIZE], LIMIT_BATCH,
                       args.duration)
    model_only = {threads: model_only_latency(runs[served["precision"]], metadata,
                                              sized[MAIN_SIZE][0], threads, args.single)
                  for threads in sorted({1, cores()})}
    model_only_fp32 = model_only_latency(runs["fp32"], metadata, sized[MAIN_SIZE][0], cores(),
                                         args.single)
    model_only_paused = model_only_latency(runs[served["precision"]], metadata, sized[MAIN_SIZE][0],
                                           1, args.single, LONE_PAUSE_S)
    lone = {mode: lone_photo_latency(runs[served["precision"]], gate, metadata, sized[MAIN_SIZE][0],
                                     args.single, LONE_PAUSE_S, beside=mode == "beside")
            for mode in ("beside", "after")}
    del model, runs, gate  # their memory is better left to the servers measured next
    streams = f"{cores()} streams x 1 thread, batch {LIMIT_BATCH}, {MAIN_SIZE}"
    limit = Row(label=f"in-process limit, served precision {served['precision']}, {streams}",
                images_per_s=limits[served["precision"]][MAIN_SIZE])
    rows = [limit]
    if served["precision"] != "fp32":
        rows.append(Row(label=f"in-process limit, fp32, {streams}",
                        images_per_s=limits["fp32"][MAIN_SIZE]))
    with tempfile.TemporaryDirectory(prefix="skin-bench-") as work:
        served_rows, parts, ready_s = bench_torchserve(QUICK_CONFIGS if args.quick else FULL_CONFIGS,
                                                args.weights, sized, args, Path(work))
    rows += served_rows
    print("Flask baseline ...", flush=True)
    flask = bench_flask(args.weights, sized[MAIN_SIZE], args)
    rows.append(flask)

    best = best_served(rows)
    values = ratios(limit, model_only[cores()], flask, best, ready_s)
    sections = [f"CPU: {cpu_info()['model']}; {cpu_flags()}",
                format_decode(decode),
                format_limits(limits, served["precision"], cores(), LIMIT_BATCH),
                format_steps(steps, served["precision"], LIMIT_BATCH, MAIN_SIZE),
                f"TorchServe serves {served['precision']} ({served['source']}); all rows below "
                f"send {MAIN_SIZE} JPEGs unless they say otherwise.\n\n"
                + format_table(rows, args.concurrency, LONE_GAP_S),
                format_profile(parts, f"{best.label}: one lone request taken apart (medians, "
                                      f"{PROFILE_REQUESTS[args.quick]} requests, {MAIN_SIZE})"),
                format_ratios(values, best, model_only, model_only_fp32,
                              (LONE_PAUSE_S * 1000, model_only_paused), lone)]
    text = "\n\n".join(sections)
    print(f"\n{text}")
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({
        "machine": machine(), "cpu": cpu_info(), "weights": str(args.weights),
        "model_version": metadata["version"], "input_size": metadata["input_size"],
        "served_precision": served["precision"], "precision_source": served["source"],
        "int8_calibration": calibration, "images": str(image_dir), "quick": args.quick,
        "concurrency": args.concurrency, "decode_ms": decode, "limits": limits,
        "model_only_p50_ms": model_only, "model_only_fp32_p50_ms": model_only_fp32,
        "model_only_paused_p50_ms": {"pause_ms": LONE_PAUSE_S * 1000, "threads": 1,
                                     "p50_ms": model_only_paused},
        "lone_photo_p50_ms": {"pause_ms": LONE_PAUSE_S * 1000, "threads": 1} | lone,
        "cold_start_to_ready_s": ready_s, "step_cpu_ms_per_image": steps, "lone_request_ms": parts,
        "rows": [{**asdict(row), "config": asdict(row.config) if row.config else None}
                 for row in rows],
        "ratios": values}, indent=2) + "\n")
    print(write_recommendation(best.config, out))
    print(f"results in {out}")
