"""Read TorchServe's Prometheus endpoint (port 8082) and boil it down to what an operator asks:
how many requests, how long they waited in the queue, how long the handler took.

TorchServe's latency metrics are cumulative counters (microseconds summed over requests), so a mean
needs the request count beside it, and a load test gets its own window by subtracting two scrapes.
The handler's Skin* timings are gauges: they hold the last batch only.
"""
from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

import settings
from api.client import FAST_CALL_S, metrics_text
from api.problems import Problem, ServerProblem

MODEL_LABELS = ("model_name", "ModelName")
# Sample names as the Prometheus parser gives them: counters end in "_total".
HOST_METRICS = ("Requests2XX_total", "Requests4XX_total", "Requests5XX_total", "CPUUtilization",
                "MemoryUsed", "MemoryAvailable")
LAST_BATCH_GAUGES = ("SkinBatchSize", "SkinDecodeMs", "SkinFrameMs", "SkinForwardMs", "SkinGateNetworkMs",
                     "SkinGateChecksMs", "SkinAnswerMs", "HandlerTime", "PredictionTime")
MODEL_COUNTERS = ("ts_inference_requests_total", "ts_inference_latency_microseconds_total",
                  "ts_queue_latency_microseconds_total", "SkinImagesHandled_total",
                  "SkinImagesRejected_total")
# Per model: {metric name: value}; counters summed over versions, gauges as last reported.
ModelMetrics = dict[str, dict[str, float]]


def scrape(metrics_url: str = settings.METRICS_URL,
           timeout: float = FAST_CALL_S) -> tuple[dict[str, float], ModelMetrics]:
    """Host-level metrics and per-model metrics from one GET of ``/metrics``."""
    try:
        text = metrics_text(metrics_url, timeout)
    except ServerProblem as failure:
        if failure.problem is Problem.NOT_RUNNING:
            raise ServerProblem(failure.problem, log=f"cannot reach the metrics API at {metrics_url}: is "
                                "TorchServe running (make serve)?") from None
        if failure.problem is Problem.TIMEOUT:
            raise ServerProblem(failure.problem, log=f"GET {metrics_url}/metrics got no answer within "
                                f"{timeout:.0f}s") from None
        raise
    host: dict[str, float] = {}
    models: ModelMetrics = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            model = next((sample.labels[key] for key in MODEL_LABELS if key in sample.labels), None)
            if model is None:
                host[name] = sample.value
            elif family.type == "counter":
                models[model][name] = models[model].get(name, 0.0) + sample.value
            else:
                models[model][name] = sample.value
    return host, dict(models)


def time_split(model: dict[str, float], before: dict[str, float] | None = None) -> dict:
    """Requests and mean milliseconds in queue and in the worker, since ``before`` if given."""
    before = before or {}
    delta = {name: model.get(name, 0.0) - before.get(name, 0.0) for name in MODEL_COUNTERS}
    requests_served = delta["ts_inference_requests_total"]
    if requests_served <= 0:
        return {"requests": 0, "mean_total_ms": None, "mean_queue_ms": None, "mean_worker_ms": None}
    total_ms = delta["ts_inference_latency_microseconds_total"] / requests_served / 1000
    queue_ms = delta["ts_queue_latency_microseconds_total"] / requests_served / 1000
    # ts_inference_latency covers the request from arrival to answer, queue wait included.
    return {"requests": int(requests_served), "mean_total_ms": round(total_ms, 2),
            "mean_queue_ms": round(queue_ms, 2), "mean_worker_ms": round(total_ms - queue_ms, 2),
            "images_handled": int(delta["SkinImagesHandled_total"]),
            "images_rejected": int(delta["SkinImagesRejected_total"])}


def summarize(host: dict[str, float], models: ModelMetrics) -> dict:
    """The readable summary behind ``python -m ops metrics``."""
    return {
        "host": {name: host[name] for name in HOST_METRICS if name in host},
        "models": {
            name: {**time_split(values),
                   "last_batch": {gauge: values[gauge] for gauge in LAST_BATCH_GAUGES
                                  if gauge in values}}
            for name, values in sorted(models.items())
        },
    }
