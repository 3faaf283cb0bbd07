"""``make soak``: ten minutes at 80 % of the measured maximum throughput on a TorchServe of its own,
reporting errors and worker memory (RSS) at the start and the end. Not part of CI.

Serves the release in ``--weights`` with the shipped handler/model-config.yaml. First a short
unthrottled locust run measures the maximum; then locust users paced with constant_throughput
hold 80 % of it. Targets (printed, exit status 1 when missed): 0 errors, RSS growth < 10 %.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import settings
from api.management import ManagementClient
from api.problems import ServerProblem
from loadtest.headless import run_loadtest, seconds, timestamped
from serve.torchserve import TorchServe
from tools.archive import build_archive

LOAD_SHARE = 0.8
MAX_RSS_GROWTH = 0.10
# Room above the paced request count before the count bound ends the run early.
REQUEST_HEADROOM = 1.5


def worker_rss(api: ManagementClient) -> dict[int, float]:
    return {worker["pid"]: worker["rssMB"] for version in api.describe("skin")
            for worker in version.get("workers", []) if worker.get("rssMB") is not None}


def soak(weights: Path, users: int, probe_s: int, duration_s: int, out_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="skin-soak-") as work:
        store = Path(work) / "model_store"
        build_archive(weights=weights, export_path=store)
        with TorchServe.on_free_ports(Path(work) / "torchserve", model_store=store).running() as server:
            api = server.management()
            common = {"host": server.url("inference"), "key_file": server.key_file,
                      "users": users, "metrics_url": server.url("metrics")}
            probe = run_loadtest(duration_s=probe_s, out_dir=out_dir / "probe", **common)
            target_rps = LOAD_SHARE * probe["requests_per_s"]
            print(f"maximum {probe['requests_per_s']:.1f} req/s with {users} users; soaking at "
                  f"{target_rps:.1f} req/s for {duration_s} s", flush=True)
            rss_start = worker_rss(api)
            run = run_loadtest(duration_s=duration_s, out_dir=out_dir / "soak",
                               rate_per_user=target_rps / users,
                               max_requests=math.ceil(target_rps * duration_s * REQUEST_HEADROOM),
                               **common)
            rss_end = worker_rss(api)
    growth = {pid: (rss_end[pid] - rss) / rss for pid, rss in rss_start.items() if pid in rss_end}
    return {"weights": str(weights), "users": users, "max_requests_per_s": probe["requests_per_s"],
            "target_requests_per_s": target_rps, "run": run,
            "rss_start_mb": rss_start, "rss_end_mb": rss_end, "rss_growth": growth,
            "workers_replaced": sorted(set(rss_start) ^ set(rss_end))}


def format_report(report: dict) -> str:
    run = report["run"]
    growth = max(report["rss_growth"].values(), default=float("nan"))
    return "\n".join([
        f"soak: {run['duration_s']} s at {report['target_requests_per_s']:.1f} req/s target "
        f"(80 % of {report['max_requests_per_s']:.1f}), {report['users']} users",
        f"requests {run['requests']} ({run['requests_per_s']:.1f}/s), errors {run['failures']} "
        f"(target 0), p50 {run['p50_ms']} ms, p95 {run['p95_ms']} ms, p99 {run['p99_ms']} ms",
        "worker RSS MB start " + ", ".join(f"{v:.0f}" for v in report["rss_start_mb"].values())
        + " -> end " + ", ".join(f"{v:.0f}" for v in report["rss_end_mb"].values())
        + f"; largest growth {100 * growth:.1f} % (target < {100 * MAX_RSS_GROWTH:.0f} %)",
        f"workers replaced during the run: {report['workers_replaced'] or 'none'}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--probe", type=seconds, default=30, help="time to measure the maximum")
    parser.add_argument("--duration", type=seconds, default=600, help="soak time (10m)")
    parser.add_argument("--out", type=Path, help="report folder (default: reports/soak-<time>)")
    args = parser.parse_args()
    out_dir = args.out or timestamped("soak")
    try:
        report = soak(args.weights, args.users, args.probe, args.duration, out_dir)
    except (ServerProblem, ValueError, RuntimeError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        sys.exit(1)
    (out_dir / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    text = format_report(report)
    (out_dir / "soak.txt").write_text(text + "\n")
    print(f"{text}\nreports in {out_dir}")
    missed = report["run"]["failures"] or report["workers_replaced"] or any(
        value >= MAX_RSS_GROWTH for value in report["rss_growth"].values())
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
