"""The benchmark's tables, its ratios, and the pick of the best set-up."""
from __future__ import annotations

from dataclasses import dataclass

from bench.configs import ServeConfig

# Set-ups within this share of the best throughput count as equally fast; the one with the lowest
# single-request latency among them wins (that is how maxBatchDelay gets tuned).
THROUGHPUT_TIE = 0.03


@dataclass
class Row:
    label: str
    images_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    single_p50_ms: float | None = None
    spaced_p50_ms: float | None = None
    errors: int = 0
    config: ServeConfig | None = None


def best_served(rows: list[Row]) -> Row:
    served = [row for row in rows if row.config is not None]
    fastest = max(row.images_per_s for row in served)
    close = [row for row in served if row.images_per_s >= (1 - THROUGHPUT_TIE) * fastest]
    return min(close, key=lambda row: row.single_p50_ms or float("inf"))


def ratios(limit: Row, model_only_p50_ms: float, flask: Row, best: Row,
           cold_start_s: float) -> dict[str, float]:
    return {
        "served_vs_limit": best.images_per_s / limit.images_per_s,
        "served_vs_flask": best.images_per_s / flask.images_per_s,
        "single_vs_model_only": (best.single_p50_ms or float("nan")) / model_only_p50_ms,
        "spaced_vs_model_only": (best.spaced_p50_ms or float("nan")) / model_only_p50_ms,
        "cold_start_s": cold_start_s,
    }


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[Row], concurrency: int, gap_s: float) -> str:
    header = ("| set-up | img/s | p50 ms | p99 ms | errors | single-request p50 ms | "
              f"single-request p50 ms, {gap_s:g} s apart |\n|---|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {row.label} | {_cell(row.images_per_s)} | {_cell(row.p50_ms)} | {_cell(row.p99_ms)} | "
             f"{row.errors} | {_cell(row.single_p50_ms)} | {_cell(row.spaced_p50_ms)} |" for row in rows]
    return (f"Closed loop, {concurrency} concurrent requests (single request: 1 at a time, back to back "
            f"and {gap_s:g} s apart)\n\n" + "\n".join([header, *lines]))


def format_decode(decode_ms: dict[str, float]) -> str:
    """Decode + preprocessing per photo at each size (one thread, p50)."""
    return ("Decode + preprocessing per photo (JPEG draft mode, framing, colour constancy, "
            "normalisation; 1 thread, p50)\n\n| photo | ms |\n|---|---:|\n"
            + "\n".join(f"| {size} | {ms:.1f} |" for size, ms in decode_ms.items()))


def format_limits(limits: dict[str, dict[str, float]], served: str, streams: int, batch: int) -> str:
    """In-process img/s, precision by photo size; the served precision marked."""
    sizes = list(next(iter(limits.values())))
    header = (f"In-process limit, img/s (handler preprocessing + model, batch {batch}, "
              f"{streams} streams x 1 thread)\n\n| precision | " + " | ".join(sizes) + " |\n|---|"
              + "---:|" * len(sizes))
    lines = [f"| {name}{' (served)' if name == served else ''} | "
             + " | ".join(f"{by_size[size]:.1f}" for size in sizes) + " |"
             for name, by_size in limits.items()]
    return "\n".join([header, *lines])


def format_steps(steps: dict[str, float], precision: str, batch: int, size: str) -> str:
    """CPU milliseconds per image of each step, and the gate's share of them."""
    return (f"CPU time per image of each step (batch {batch}, 1 thread, {size} photos, {precision})"
            "\n\n| step | CPU ms per image |\n|---|---:|\n"
            f"| decode and frame for both networks | {steps['decode_ms']:.2f} |\n"
            f"| task network ({precision}) and softmax | {steps['model_ms']:.2f} |\n"
            f"| gate: its network, distances, quality checks | {steps['gate_ms']:.2f} |\n\n"
            f"the gate's share of a served image's cost: {steps['gate_share']:.2f}")


def format_ratios(values: dict[str, float], best: Row, model_only: dict[int, float],
                  model_only_fp32_ms: float, paused: tuple[float, float],
                  lone: dict[str, dict[str, float]]) -> str:
    """``model_only`` maps torch threads to the p50 of one image's forward pass at the served
    precision, back to back; fp32's beside it at the most threads; ``paused`` is (pause ms, p50 ms)
    of the served precision's on one thread with that pause before each pass; ``lone`` is
    ``lone_photo_latency`` with the gate "beside" and "after", with the same pause."""
    names = {"served_vs_limit": "best TorchServe / in-process limit at the served precision",
             "served_vs_flask": "best TorchServe / Flask baseline",
             "single_vs_model_only": "single-request p50 / model-only latency",
             "spaced_vs_model_only": "single-request p50, requests apart / model-only latency",
             "cold_start_s": "cold start to READY, s"}
    lines = [f"best TorchServe set-up: {best.label}",
             "model-only latency (one image, forward pass, p50): " + ", ".join(
                 f"{p50:.1f} ms with {threads} thread{'s' if threads > 1 else ''}"
                 for threads, p50 in sorted(model_only.items(), reverse=True))
             + f" (fp32: {model_only_fp32_ms:.1f} ms with {max(model_only)} threads)",
             f"model-only latency with 1 thread, {paused[0]:.0f} ms apart as a worker runs lone "
             f"requests (p50): {paused[1]:.1f} ms",
             f"a lone photo's task network and the gate's, 1 thread each, {paused[0]:.0f} ms apart (p50): "
             + "; ".join(f"the gate {mode}: task network {p50['task_ms']:.1f} ms, both {p50['both_ms']:.1f} ms"
                         for mode, p50 in lone.items())]
    lines += [f"{names[key]}: {value:.2f}" for key, value in values.items()]
    return "\n".join(lines)
