"""Read locust's CSV files into a summary and draw latency over time."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # locust writes "N/A" before the first answer


def read_totals(totals_json: Path) -> dict:
    """Totals of a run as the locustfile wrote them when locust quit, plus the error rate."""
    totals = json.loads(totals_json.read_text())
    totals["error_rate"] = (totals["failures"] / totals["requests"]) if totals["requests"] else None
    return totals


def plot_latency(history_csv: Path, png: Path, title: str) -> Path:
    """p50/p95/p99 (locust's sliding window) and throughput against seconds since the start."""
    with history_csv.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    start = int(rows[0]["Timestamp"]) if rows else 0
    seconds = [int(row["Timestamp"]) - start for row in rows]
    figure, latency = plt.subplots(figsize=(9, 4.5))
    for column in ("50%", "95%", "99%"):
        latency.plot(seconds, [_number(row[column]) for row in rows], label=f"p{column[:-1]}")
    latency.set_xlabel("seconds since start")
    latency.set_ylabel("latency (ms)")
    latency.legend(loc="upper left")
    throughput = latency.twinx()
    throughput.plot(seconds, [_number(row["Requests/s"]) for row in rows], color="grey",
                    linestyle=":", label="req/s")
    throughput.set_ylabel("requests/s")
    throughput.legend(loc="upper right")
    latency.set_title(title)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return png


def format_summary(summary: dict) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    lines = [
        f"{summary['users']} users, {summary['duration_s']} s against {summary['host']}",
        f"requests   {summary['requests']} ({summary['requests_per_s'] or 0:.1f}/s), failures "
        f"{summary['failures']} (error rate {100 * (summary['error_rate'] or 0):.2f} %)",
        f"latency    p50 {ms(summary['p50_ms'])}, p95 {ms(summary['p95_ms'])}, "
        f"p99 {ms(summary['p99_ms'])}, max {ms(summary['max_ms'])}",
    ]
    server = summary.get("server")
    if server and server.get("requests"):
        lines.append(f"server     {server['mean_total_ms']:.1f} ms per request in TorchServe = "
                     f"{server['mean_queue_ms']:.1f} ms queued + {server['mean_worker_ms']:.1f} ms "
                     f"in the worker (handler)")
    return "\n".join(lines)
