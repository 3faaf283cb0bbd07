"""Plain-text views of management and metrics answers, for people at a terminal."""
from __future__ import annotations


def render_models(models: list[dict]) -> str:
    if not models:
        return "no models registered"
    width = max(len(model["modelName"]) for model in models)
    return "\n".join(f"{model['modelName']:<{width}}  {model['modelUrl']}" for model in models)


def render_describe(versions: list[dict]) -> str:
    blocks = []
    for version in versions:
        queue = version.get("jobQueueStatus", {})
        lines = [
            f"{version['modelName']} {version['modelVersion']}  ({version['modelUrl']}, "
            f"{version.get('deviceType', '?')})",
            f"  workers      {version['minWorkers']}..{version['maxWorkers']}, batch "
            f"{version['batchSize']}, max batch delay {version['maxBatchDelay']} ms, "
            f"response timeout {version['responseTimeout']} s",
            f"  queue        {queue.get('pendingRequests', '?')} pending, "
            f"{queue.get('remainingCapacity', '?')} free",
            f"  precision    {render_precision(version.get('precision'))}",
            f"  threads      {render_threads(version.get('threads'))}",
        ]
        for worker in version.get("workers", []):
            rss = f"{worker['rssMB']:.0f} MB RSS" if worker.get("rssMB") is not None else "RSS n/a"
            lines.append(f"  worker {worker['id']}  {worker['status']:<9} pid {worker['pid']}  "
                         f"{rss}  since {worker['startTime']}")
        if not version.get("workers"):
            lines.append("  no workers")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_precision(served: dict | None) -> str:
    """What the handler runs and, when it was measured, the figures that chose it."""
    if not served:
        return "unknown (no worker answered)"
    text = f"{served['precision']}, {served['source']}"
    choice = served.get("choice")
    if choice:
        figures = choice["candidates"]
        text += "; img/s " + ", ".join(f"{name} {values['images_per_s']:.0f}"
                                       for name, values in figures.items())
        mine = figures.get(served["precision"], {})
        if "top1_agreement" in mine:
            # Choices made before release 3.0 were scored on the test split.
            scored = choice.get("scored_on") or {"split": "test", "images": choice.get("test_images")}
            text += (f"; top-1 agreement {mine['top1_agreement']:.3f}, BMA change "
                     f"{mine['bma_change']:+.4f} on {scored['images']} {scored['split']} images")
        elif mine:
            # The choice scores precisions fastest first and stops at the first that passes, so a
            # precision requested with PRECISION= may have been timed and never checked.
            text += f"; {served['precision']} was not checked for accuracy on this kind of CPU"
    return text


def render_threads(threads: dict | None) -> str:
    """A worker's torch threads, and whether a lone photo's gate network gets a thread of its own."""
    if not threads:
        return "unknown (no worker answered)"
    text = f"{threads['torch_threads']} torch thread(s) per worker"
    if threads["gate_beside"]:
        text += "; a lone photo's gate network runs on a thread of its own, beside the task network"
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render_metrics(summary: dict) -> str:
    host = summary["host"]
    lines = [
        "responses    " + ", ".join(f"{code}: {host.get(f'Requests{code}_total', 0):.0f}"
                                    for code in ("2XX", "4XX", "5XX")),
    ]
    if "CPUUtilization" in host:
        lines.append(f"host         CPU {host['CPUUtilization']:.0f} %, memory used "
                     f"{host.get('MemoryUsed', 0):.0f} MB, available "
                     f"{host.get('MemoryAvailable', 0):.0f} MB (sampled once a minute)")
    for name, model in summary["models"].items():
        lines += [
            f"{name}",
            f"  requests     {model['requests']} (images classified "
            f"{model.get('images_handled', 0)}, rejected {model.get('images_rejected', 0)})",
            f"  mean time    {_ms(model['mean_total_ms'])} in TorchServe = "
            f"{_ms(model['mean_queue_ms'])} queued + {_ms(model['mean_worker_ms'])} in the worker",
        ]
        batch = model["last_batch"]
        if batch:
            lines.append("  last batch   " + ", ".join(
                f"{key.removeprefix('Skin')} {value:g}" for key, value in batch.items()))
    return "\n".join(lines)
