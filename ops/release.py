"""Turn a release in the model store into ``<name>-<version>.mar`` beside the serving archive.

TorchServe registers archives by file name from its model store, and ``skin.mar`` is the one loaded
at start-up, so a new version gets its own versioned file instead of overwriting that one. A file of
that name is reused only when it was built from exactly this release (its recorded inputs hash).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from handler.checkpoint import METADATA_FILE, load_metadata
from ops.names import release_version
from tools.archive import DEFAULT_CONFIG, build_archive, is_current


def shipped_batching() -> dict:
    """The shipped model-config.yaml, so a registered version batches like the served one."""
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def versioned_archive(weights: Path, model_store: Path, name: str = "skin",
                      config_file: Path = DEFAULT_CONFIG) -> tuple[Path, str]:
    """Build ``<model_store>/<name>-<version>.mar``, or reuse it when it was built from these very
    inputs; returns it and the version."""
    version = release_version(str(load_metadata(weights.with_name(METADATA_FILE))["version"]))
    target = model_store / f"{name}-{version}.mar"
    if not is_current(target, weights, config_file):
        with tempfile.TemporaryDirectory(prefix="skin-register-") as scratch:
            built = build_archive(weights=weights, export_path=Path(scratch),
                                  config_file=config_file, model_name=name)
            shutil.move(built, target)
    return target, version
