"""The benchmark's best set-up as the settings a person applies: which keys of which shipped file
would change, from what to what. The bench never edits tracked files itself."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

import settings
from bench.configs import ServeConfig
from serve.torchserve import read_properties

RECOMMENDATION_FILE = "recommended.json"


def recommendation(config: ServeConfig, model_config: Path = settings.MODEL_CONFIG,
                   properties: Path = settings.TORCHSERVE_CONFIG) -> dict[str, dict[str, dict]]:
    """{file: {key: {"shipped": value, "best": value}}} for the batching and worker keys."""
    shipped_model = yaml.safe_load(model_config.read_text())
    shipped_properties = read_properties(properties)
    best_model = {"minWorkers": config.workers, "maxWorkers": config.workers,
                  "batchSize": config.batch_size, "maxBatchDelay": config.max_batch_delay}
    best_properties = {"default_workers_per_model": str(config.workers)}
    return {
        str(model_config.relative_to(settings.REPO)):
            {key: {"shipped": shipped_model.get(key), "best": value} for key, value in best_model.items()},
        str(properties.relative_to(settings.REPO)):
            {key: {"shipped": shipped_properties.get(key), "best": value} for key, value in best_properties.items()},
    }


def write_recommendation(config: ServeConfig, out: Path) -> str:
    """Write ``recommended.json`` into ``out``; returns what to tell the person running the bench."""
    changes = recommendation(config)
    (out / RECOMMENDATION_FILE).write_text(json.dumps(changes, indent=2) + "\n")
    differing = [f"  {file}: {key} {values['shipped']} -> {values['best']}"
                 for file, keys in changes.items() for key, values in keys.items()
                 if str(values["shipped"]) != str(values["best"])]
    if not differing:
        return "the shipped set-up is the best one measured; nothing to change"
    return "to serve the best set-up measured, change:\n" + "\n".join(differing) + \
        f"\n(also in {out / RECOMMENDATION_FILE})"
