"""Reading a labelled image set from disk, whichever of the three supported layouts it uses.

Layouts, detected from the directory's contents:

* ``labels_csv``: ``labels.csv`` (columns image_id, lesion_id, label) beside an ``images/`` folder;
* ``class_folders``: one sub-folder per class code (``AK/``, ``BCC/``, ...) holding the images; every
  image is its own lesion;
* ``isic2019``: the official ``ISIC_2019_Training_GroundTruth.csv`` (one-hot columns), optionally
  ``ISIC_2019_Training_Metadata.csv`` with lesion_id, images in ``ISIC_2019_Training_Input/`` or
  beside the CSV.

Class codes and their order come only from ``contract.classes``.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from contract.classes import CODES
from contract.formats import FILE_SUFFIXES

ISIC2019_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_METADATA = "ISIC_2019_Training_Metadata.csv"
ISIC2019_IMAGES = "ISIC_2019_Training_Input"
ISIC2019_UNKNOWN = "UNK"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into contract.classes.CODES
    lesion_id: str
    source: str = ""  # the clinic or collection, for per-source reports: labels.csv's ``source`` or the folder


def read_folders(data_dirs: list[Path]) -> list[list[Sample]]:
    """The samples of each data directory, in the order given (each sorted as ``read_samples``)."""
    return [read_samples(Path(data_dir)) for data_dir in data_dirs]


def detect_layout(data_dir: Path) -> str:
    """Name the layout of ``data_dir``; raises FileNotFoundError when none matches."""
    if (data_dir / "labels.csv").is_file():
        return "labels_csv"
    if (data_dir / ISIC2019_GROUND_TRUTH).is_file():
        return "isic2019"
    if any((data_dir / code).is_dir() for code in CODES):
        return "class_folders"
    raise FileNotFoundError(
        f"{data_dir} holds neither labels.csv, {ISIC2019_GROUND_TRUTH} nor class folders {list(CODES)}")


def read_samples(data_dir: Path) -> list[Sample]:
    """All labelled images under ``data_dir``, sorted by path so that splits are reproducible."""
    data_dir = Path(data_dir)
    readers = {"labels_csv": _read_labels_csv, "class_folders": _read_class_folders,
               "isic2019": _read_isic2019}
    samples = readers[detect_layout(data_dir)](data_dir)
    if not samples:
        raise ValueError(f"no labelled images found in {data_dir}")
    return sorted(samples, key=lambda sample: str(sample.path))


def class_counts(samples: list[Sample]) -> dict[str, int]:
    """Images per class code, in the model's class order."""
    counts = Counter(sample.label for sample in samples)
    return {code: counts.get(index, 0) for index, code in enumerate(CODES)}


def _find_image(folder: Path, image_id: str) -> Path:
    for suffix in FILE_SUFFIXES:
        candidate = folder / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no image file for {image_id} in {folder}")


def _label_index(code: str, where: str) -> int:
    try:
        return CODES.index(code)
    except ValueError:
        raise ValueError(f"{where}: unknown class code {code!r}; expected one of {list(CODES)}") from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _read_labels_csv(data_dir: Path) -> list[Sample]:
    image_dir = data_dir / "images"
    return [Sample(_find_image(image_dir, row["image_id"]),
                   _label_index(row["label"], f"labels.csv row {row['image_id']}"),
                   row.get("lesion_id") or row["image_id"], row.get("source") or data_dir.name)
            for row in _read_csv(data_dir / "labels.csv")]


def _read_class_folders(data_dir: Path) -> list[Sample]:
    samples = []
    for index, code in enumerate(CODES):
        folder = data_dir / code
        if not folder.is_dir():
            continue
        samples += [Sample(path, index, path.stem, data_dir.name) for path in folder.iterdir()
                    if path.suffix.lower() in FILE_SUFFIXES]
    return samples


def _read_isic2019(data_dir: Path) -> list[Sample]:
    image_dir = data_dir / ISIC2019_IMAGES
    if not image_dir.is_dir():
        image_dir = data_dir
    lesions: dict[str, str] = {}
    metadata = data_dir / ISIC2019_METADATA
    if metadata.is_file():
        lesions = {row["image"]: row.get("lesion_id", "") for row in _read_csv(metadata)}
    samples = []
    for row in _read_csv(data_dir / ISIC2019_GROUND_TRUTH):
        image_id = row["image"]
        hot = [column for column, value in row.items()
               if column != "image" and value and float(value) >= 0.5]
        if hot in ([], [ISIC2019_UNKNOWN]):
            continue
        if len(hot) != 1:
            raise ValueError(f"{ISIC2019_GROUND_TRUTH}: {image_id} has labels {hot}")
        samples.append(Sample(_find_image(image_dir, image_id), _label_index(hot[0], image_id),
                              lesions.get(image_id) or image_id, data_dir.name))
    return samples
