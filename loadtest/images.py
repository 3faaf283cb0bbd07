"""The rotating set of real dermoscopy images that the load test and the benchmark send.

HAM10000 images (600x450, as phones and dermatoscopes deliver them) when ../shared/data holds the
dataset, otherwise the eight small fixtures committed with the tests. The dataset itself is never
committed.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASET_IMAGES = REPO.parent / "shared" / "data" / "ham10000" / "images"
FIXTURE_IMAGES = REPO / "tests" / "fixtures" / "images"
DEFAULT_LIMIT = 64


def default_image_dir() -> Path:
    return DATASET_IMAGES if DATASET_IMAGES.is_dir() else FIXTURE_IMAGES


def load_images(directory: Path | None = None, limit: int = DEFAULT_LIMIT) -> list[tuple[str, bytes]]:
    """Up to ``limit`` JPEGs as (file name, bytes), in a fixed order so runs send the same set."""
    directory = directory or default_image_dir()
    paths = sorted(directory.glob("*.jpg"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no .jpg images in {directory}")
    return [(path.name, path.read_bytes()) for path in paths]
