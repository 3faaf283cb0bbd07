"""The benchmark recommends a set-up and leaves the shipped configuration files alone."""
from __future__ import annotations

import json

import yaml

import settings
from bench.configs import ServeConfig
from bench.recommendation import RECOMMENDATION_FILE, write_recommendation


def shipped() -> tuple[str, str]:
    return settings.MODEL_CONFIG.read_text(), settings.TORCHSERVE_CONFIG.read_text()


def test_the_recommendation_names_each_changed_key_and_touches_no_tracked_file(tmp_path):
    before = shipped()
    workers = yaml.safe_load(before[0])["maxWorkers"]
    told = write_recommendation(ServeConfig(workers=workers + 1, batch_size=3, max_batch_delay=7), tmp_path)
    written = json.loads((tmp_path / RECOMMENDATION_FILE).read_text())
    model = written["handler/model-config.yaml"]
    assert model["maxWorkers"] == {"shipped": workers, "best": workers + 1}
    assert model["batchSize"]["best"] == 3 and model["maxBatchDelay"]["best"] == 7
    assert written["config.properties"]["default_workers_per_model"]["best"] == str(workers + 1)
    assert f"maxWorkers {workers} -> {workers + 1}" in told and "batchSize" in told
    assert shipped() == before


def test_the_shipped_set_up_needs_no_change(tmp_path):
    config = yaml.safe_load(settings.MODEL_CONFIG.read_text())
    best = ServeConfig(workers=config["maxWorkers"], batch_size=config["batchSize"],
                       max_batch_delay=config["maxBatchDelay"])
    assert write_recommendation(best, tmp_path).startswith("the shipped set-up is the best")
