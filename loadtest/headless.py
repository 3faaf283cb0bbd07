"""Run locust headless against a SKIN TorchServe on this machine and write its reports.

``python -m loadtest --users 8 --duration 60`` (defaults: the `make serve` instance). Writes into
the output folder: locust_stats.csv, locust_stats_history.csv, locust_failures.csv, locust.html,
locust_totals.json, summary.json, summary.txt and latency.png. Exit status 1 when any request failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import settings
from api.client import PROTOCOLS
from api.problems import Problem, ServerProblem
from loadtest.images import default_image_dir
from loadtest.stats import format_summary, plot_latency, read_totals
from ops.metrics import scrape, time_split

LOCUSTFILE = settings.REPO / "loadtest" / "locustfile.py"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_MAX_REQUESTS = 50_000
# Time locust gets beyond --run-time to stop its users and write the reports.
SHUTDOWN_GRACE_S = 60


def require_loopback(url: str) -> None:
    """Load goes to this machine only; anything else is refused before a request is sent."""
    host = urlparse(url).hostname
    if host not in LOOPBACK_HOSTS and not (host or "").startswith("127."):
        raise ValueError(f"refusing to load-test {url}: only loopback addresses (127.0.0.1) are allowed")


def run_loadtest(host: str, key_file: Path, users: int, duration_s: int, out_dir: Path, *,
                 metrics_url: str | None = settings.METRICS_URL, model: str = "skin",
                 max_requests: int = DEFAULT_MAX_REQUESTS, rate_per_user: float | None = None,
                 image_dir: Path | None = None, processes: int = 1, protocol: str = "v1",
                 token: str | None = None, host_header: str | None = None) -> dict:
    """One bounded locust run; returns the summary also written to ``out_dir/summary.json``.

    ``token`` replaces the key file (a cluster's ingress token); ``host_header`` names the service
    when ``host`` is an ingress gateway reached through ``kubectl port-forward``.
    """
    require_loopback(host)
    if metrics_url:
        require_loopback(metrics_url)
    if not token and not key_file.exists():
        raise ServerProblem(Problem.KEY, log=f"key file {key_file} not found: is TorchServe running from that folder?")
    out_dir.mkdir(parents=True, exist_ok=True)
    before = scrape(metrics_url)[1].get(model, {}) if metrics_url else None
    environment = {**os.environ, "SKIN_KEY_FILE": str(key_file.resolve()), "SKIN_MODEL": model,
                   "SKIN_PROTOCOL": protocol, "SKIN_TOKEN": token or "",
                   "SKIN_HOST_HEADER": host_header or "",
                   "SKIN_IMAGE_DIR": str(image_dir or default_image_dir()),
                   "SKIN_MAX_REQUESTS": str(max_requests),
                   "SKIN_RATE_PER_USER": str(rate_per_user or 0),
                   "SKIN_TOTALS_FILE": str(out_dir / "locust_totals.json"),
                   "PYTHONPATH": str(settings.REPO)}
    prefix = out_dir / "locust"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{duration_s}s",
               "--stop-timeout", "10", "--host", host, "--csv", str(prefix), "--csv-full-history",
               "--html", str(prefix) + ".html", "--only-summary", "--loglevel", "WARNING"]
    if processes > 1:
        # One Python process cannot generate GPU-sized loads; locust forks workers for that.
        command += ["--processes", str(processes)]
    started = time.monotonic()
    # locust exits 1 when a request failed; the summary below reports that, so the code is ignored.
    subprocess.run(command, cwd=settings.REPO, env=environment, timeout=duration_s + SHUTDOWN_GRACE_S,
                   stdout=(out_dir / "locust.log").open("wb"), stderr=subprocess.STDOUT)
    if not (out_dir / "locust_totals.json").exists():
        raise RuntimeError(f"locust wrote no statistics; see {out_dir / 'locust.log'}")
    summary = {"host": host, "protocol": protocol, "users": users, "duration_s": duration_s,
               "rate_per_user": rate_per_user, "wall_s": round(time.monotonic() - started, 1),
               **read_totals(out_dir / "locust_totals.json")}
    if metrics_url:
        summary["server"] = time_split(scrape(metrics_url)[1].get(model, {}), before)
    plot_latency(Path(f"{prefix}_stats_history.csv"), out_dir / "latency.png",
                 f"SKIN load test: {users} users, {duration_s} s")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.txt").write_text(format_summary(summary) + "\n")
    return summary


def seconds(text: str) -> int:
    """A duration as `make loadtest DURATION=` takes it: 90, 90s, 5m or 1h."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1:] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90, 90s, 5m or 1h") from None


def timestamped(prefix: str) -> Path:
    return settings.REPO / "reports" / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest",
                                     description="Headless locust run against SKIN on loopback.")
    parser.add_argument("--host", default=settings.INFERENCE_URL, help="inference address (%(default)s)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="v1",
                        help="v1 (/predictions/skin) or v2 (KServe's /v2/models/skin/infer)")
    parser.add_argument("--key-file", type=Path, default=settings.KEY_FILE)
    parser.add_argument("--token", help="bearer token instead of the key file (a cluster's ingress)")
    parser.add_argument("--host-header", help="Host header, for an ingress gateway on a port-forward")
    parser.add_argument("--metrics-url", default=settings.METRICS_URL,
                        help="TorchServe's metrics address; empty to skip (%(default)s)")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--duration", type=seconds, default=60, help="90, 90s, 5m or 1h")
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS)
    parser.add_argument("--rate-per-user", type=float, help="requests/s per user (default: no wait)")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: HAM10000 if present)")
    parser.add_argument("--processes", type=int, default=1,
                        help="locust processes (more than 1 only for loads one core cannot send)")
    parser.add_argument("--out", type=Path, help="report folder (default: reports/loadtest-<time>)")
    args = parser.parse_args()
    out_dir = args.out or timestamped("loadtest")
    try:
        summary = run_loadtest(args.host, args.key_file, args.users, args.duration, out_dir,
                               metrics_url=args.metrics_url, max_requests=args.max_requests,
                               rate_per_user=args.rate_per_user, image_dir=args.images,
                               processes=args.processes, protocol=args.protocol, token=args.token,
                               host_header=args.host_header)
    except (ServerProblem, ValueError, RuntimeError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        sys.exit(1)
    print(format_summary(summary))
    print(f"reports in {out_dir}")
    sys.exit(1 if summary["failures"] else 0)
