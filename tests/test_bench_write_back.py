"""The benchmark's write-back changes only the batching and worker settings, comments intact."""
from __future__ import annotations

import yaml

import settings
from bench.configs import ServeConfig
from bench.write_back import write_back
from serve.torchserve import read_properties
from tools.archive import DEFAULT_CONFIG


def test_write_back_sets_the_best_configuration(tmp_path):
    model_config, properties = tmp_path / "model-config.yaml", tmp_path / "config.properties"
    model_config.write_text(DEFAULT_CONFIG.read_text())
    # Start without the key, so the first write adds it and the second replaces it.
    properties.write_text("".join(line for line in settings.TORCHSERVE_CONFIG.read_text().splitlines(keepends=True)
                                  if not line.startswith("default_workers_per_model=")))
    write_back(ServeConfig(workers=2, batch_size=8, max_batch_delay=20), model_config, properties)
    written = yaml.safe_load(model_config.read_text())
    assert (written["minWorkers"], written["maxWorkers"], written["batchSize"],
            written["maxBatchDelay"]) == (2, 2, 8, 20)
    assert written["handler"] == yaml.safe_load(DEFAULT_CONFIG.read_text())["handler"]
    assert model_config.read_text().count("#") == DEFAULT_CONFIG.read_text().count("#")
    assert read_properties(properties)["default_workers_per_model"] == "2"
    write_back(ServeConfig(workers=1, batch_size=4, max_batch_delay=5), model_config, properties)
    assert read_properties(properties)["default_workers_per_model"] == "1"
    assert properties.read_text().count("default_workers_per_model") == 1
    def others(path):
        return {k: v for k, v in read_properties(path).items() if k != "default_workers_per_model"}

    assert others(properties) == others(settings.TORCHSERVE_CONFIG)
