"""Write the benchmark's best set-up back as the shipped defaults, keeping the files' comments."""
from __future__ import annotations

import re
from pathlib import Path

import settings
from bench.configs import ServeConfig
from tools.archive import DEFAULT_CONFIG

WORKERS_COMMENT = "# Workers per model when an archive does not say; written by `make bench`."


def _set_line(text: str, pattern: str, line: str) -> str:
    updated, count = re.subn(pattern, line, text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise ValueError(f"no line matching {pattern!r} to update")
    return updated


def write_back(config: ServeConfig, model_config: Path = DEFAULT_CONFIG,
               properties: Path = settings.TORCHSERVE_CONFIG) -> None:
    """Batch size, delay and workers into model-config.yaml; workers into config.properties."""
    text = model_config.read_text()
    for key, value in (("minWorkers", config.workers), ("maxWorkers", config.workers),
                       ("batchSize", config.batch_size), ("maxBatchDelay", config.max_batch_delay)):
        text = _set_line(text, rf"^{key}:.*$", f"{key}: {value}")
    model_config.write_text(text)

    text = properties.read_text()
    line = f"default_workers_per_model={config.workers}"
    if re.search(r"^default_workers_per_model=", text, flags=re.MULTILINE):
        text = _set_line(text, r"^default_workers_per_model=.*$", line)
    else:
        text = text.rstrip("\n") + f"\n{WORKERS_COMMENT}\n{line}\n"
    properties.write_text(text)
