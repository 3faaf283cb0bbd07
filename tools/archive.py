"""Build model_store/skin.mar from the release weights and the handler package.

Usage: python -m tools.archive [--weights model_store/skin_resnet34.pt] [--export-path model_store]

torch-model-archiver copies each file of an --extra-files folder to the archive root, so the handler
package is staged as ``<stage>/handler/`` and arrives as the importable package ``handler`` beside
the entry module, exactly as it is imported in this repository.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from handler.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_metadata
from handler.gate import GATE_FILE, load_gate_state

REPO = Path(__file__).resolve().parent.parent
HANDLER_DIR = REPO / "handler"
MODEL_STORE = REPO / "model_store"
DEFAULT_CONFIG = HANDLER_DIR / "model-config.yaml"
PACKAGE_FILES = ("__init__.py", "batch.py", "classes.py", "classes.json", "checkpoint.py", "cpus.py",
                 "explanation.py", "gate.py", "gradcam.py", "kservev2_envelope.py", "model.py",
                 "preprocessing.py", "refusals.py", "skin_handler.py", "v2.py")


def build_archive(weights: Path = MODEL_STORE / WEIGHTS_FILE, export_path: Path = MODEL_STORE,
                  config_file: Path = DEFAULT_CONFIG, model_name: str = "skin") -> Path:
    """Run torch-model-archiver; the metadata JSON and the gate fitted for these weights must sit
    beside ``weights``."""
    metadata_path, gate_path = weights.with_name(METADATA_FILE), weights.with_name(GATE_FILE)
    metadata = load_metadata(metadata_path)
    load_gate_state(gate_path, weights)
    export_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skin-archive-") as stage:
        package = Path(stage) / "handler"
        package.mkdir()
        for name in PACKAGE_FILES:
            shutil.copy2(HANDLER_DIR / name, package / name)
        shutil.copy2(metadata_path, Path(stage) / METADATA_FILE)
        shutil.copy2(gate_path, Path(stage) / GATE_FILE)
        subprocess.run([
            str(Path(sys.executable).parent / "torch-model-archiver"),
            "--model-name", model_name,
            "--version", str(metadata["version"]),
            "--model-file", str(HANDLER_DIR / "model.py"),
            "--serialized-file", str(weights),
            "--handler", str(HANDLER_DIR / "skin_handler.py"),
            "--extra-files", stage,
            "--config-file", str(config_file),
            "--export-path", str(export_path),
            "--force",
        ], check=True)
    return export_path / f"{model_name}.mar"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=MODEL_STORE / WEIGHTS_FILE)
    parser.add_argument("--export-path", type=Path, default=MODEL_STORE)
    parser.add_argument("--config-file", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--model-name", default="skin")
    args = parser.parse_args()
    archive = build_archive(args.weights, args.export_path, args.config_file, args.model_name)
    print(f"wrote {archive} ({archive.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
