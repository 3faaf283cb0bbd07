"""The benchmark's table, its ratios against the issue's targets, and the pick of the best set-up."""
from __future__ import annotations

from dataclasses import dataclass

from bench.configs import ServeConfig

# Set-ups within this share of the best throughput count as equally fast; the one with the lowest
# single-request latency among them wins (that is how maxBatchDelay gets tuned).
THROUGHPUT_TIE = 0.03
TARGETS = {"served_vs_limit": 0.90, "served_vs_flask": 2.0, "single_vs_model_only": 1.3}


@dataclass
class Row:
    label: str
    images_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    single_p50_ms: float | None = None
    errors: int = 0
    config: ServeConfig | None = None


def best_served(rows: list[Row]) -> Row:
    served = [row for row in rows if row.config is not None]
    fastest = max(row.images_per_s for row in served)
    close = [row for row in served if row.images_per_s >= (1 - THROUGHPUT_TIE) * fastest]
    return min(close, key=lambda row: row.single_p50_ms or float("inf"))


def ratios(limit: Row, model_only_p50_ms: float, flask: Row, best: Row) -> dict[str, float]:
    return {
        "served_vs_limit": best.images_per_s / limit.images_per_s,
        "served_vs_flask": best.images_per_s / flask.images_per_s,
        "single_vs_model_only": (best.single_p50_ms or float("nan")) / model_only_p50_ms,
    }


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[Row], concurrency: int) -> str:
    header = (f"| set-up | img/s | p50 ms | p99 ms | errors | single-request p50 ms |\n"
              f"|---|---:|---:|---:|---:|---:|")
    lines = [f"| {row.label} | {_cell(row.images_per_s)} | {_cell(row.p50_ms)} | "
             f"{_cell(row.p99_ms)} | {row.errors} | {_cell(row.single_p50_ms)} |" for row in rows]
    return f"Closed loop, {concurrency} concurrent requests (single request: 1 at a time)\n\n" + \
        "\n".join([header, *lines])


def format_ratios(values: dict[str, float], best: Row, model_only: dict[int, float]) -> str:
    """``model_only`` maps torch threads to the p50 of one image's forward pass."""
    names = {"served_vs_limit": "best TorchServe / in-process limit",
             "served_vs_flask": "best TorchServe / Flask baseline",
             "single_vs_model_only": "single-request p50 / model-only latency"}
    lines = [f"best TorchServe set-up: {best.label}",
             "model-only latency (one image, forward pass, p50): " + ", ".join(
                 f"{p50:.1f} ms with {threads} thread{'s' if threads > 1 else ''}"
                 for threads, p50 in sorted(model_only.items(), reverse=True))]
    for key, value in values.items():
        comparison = ">=" if key != "single_vs_model_only" else "<="
        met = value >= TARGETS[key] if comparison == ">=" else value <= TARGETS[key]
        lines.append(f"{names[key]}: {value:.2f} (target {comparison} {TARGETS[key]}: "
                     f"{'met' if met else 'NOT met'})")
    return "\n".join(lines)
