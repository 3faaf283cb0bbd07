"""Lay out the folder that an InferenceService's storageUri points at (`make kserve-bundle`).

    python -m tools.kserve_bundle [--out .run/kserve-bundle] [--model-config bench/gpu-model-config.yaml]

KServe's TorchServe runtime expects, under storageUri, ``config/config.properties`` and
``model-store/<model>.mar``. The archive is model_store/skin.mar as `make archive` built it; the
configuration is config.properties with the KServe changes of tools/deploy_config.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import zipfile
from pathlib import Path

import settings
from serve.torchserve import write_properties
from tools.archive import DEFAULT_CONFIG
from tools.deploy_config import kserve_properties, model_snapshot

DEFAULT_OUT = settings.REPO / ".run" / "kserve-bundle"
CONFIG_PATH = Path("config") / "config.properties"
ARCHIVE_DIR = Path("model-store")
BUNDLE_FOLDERS = (CONFIG_PATH.parent, ARCHIVE_DIR)


class NotABundleError(ValueError):
    """``--out`` names something this tool did not write; nothing was removed."""


def check_replaceable(out: Path) -> None:
    """Raise NotABundleError unless ``out`` is absent, an empty folder, or a bundle: only
    config/config.properties and model-store/*.mar, no links. The bundle is replaced whole, and
    a mistyped --out (a home folder, the repository) must not be."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise NotABundleError(f"{out} is not a folder; name a new folder or an old bundle")
    for folder, subfolders, files in os.walk(out):
        here = Path(folder).relative_to(out)
        expected = [*((here / name, here / name in BUNDLE_FOLDERS) for name in subfolders),
                    *((here / name, bundle_file(here / name)) for name in files)]
        for path, belongs in expected:
            if not belongs or (out / path).is_symlink():
                raise NotABundleError(f"{out} holds {path}, so it is no bundle of this tool's; "
                                      "name a new folder or an old bundle")


def bundle_file(path: Path) -> bool:
    return path == CONFIG_PATH or (path.parent == ARCHIVE_DIR and path.suffix == ".mar")


def archive_manifest(archive: Path) -> dict:
    """The archive's MAR-INF/MANIFEST.json: its model name and version."""
    with zipfile.ZipFile(archive) as mar:
        return json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]


def write_bundle(out: Path = DEFAULT_OUT, archive: Path = settings.ARCHIVE,
                 model_config: Path = DEFAULT_CONFIG) -> Path:
    """Copy the archive and write the configuration under ``out``; returns ``out``."""
    manifest = archive_manifest(archive)
    snapshot = model_snapshot(manifest["modelName"], manifest["modelVersion"], archive.name,
                              model_config)
    check_replaceable(out)
    if out.exists():
        shutil.rmtree(out)
    (out / ARCHIVE_DIR).mkdir(parents=True)
    (out / CONFIG_PATH).parent.mkdir(parents=True)
    shutil.copy2(archive, out / ARCHIVE_DIR / archive.name)
    write_properties(kserve_properties(snapshot), out / CONFIG_PATH)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--archive", type=Path, default=settings.ARCHIVE)
    parser.add_argument("--model-config", type=Path, default=DEFAULT_CONFIG,
                        help="workers and batching for the snapshot (bench/gpu-model-config.yaml "
                             "for the GPU service)")
    args = parser.parse_args()
    try:
        out = write_bundle(args.out, args.archive, args.model_config)
    except NotABundleError as exc:
        raise SystemExit(f"not written: {exc}") from None
    print(f"wrote {out}: {CONFIG_PATH} and {ARCHIVE_DIR / args.archive.name}; upload it where the "
          "InferenceService's storageUri points")


if __name__ == "__main__":
    main()
