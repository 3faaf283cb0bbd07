"""The eight ISIC 2019 lesion classes, read from classes.json beside this file.

Training, the TorchServe handler and the Streamlit frontend all import this module, so the codes,
their order (the model's output order), the names and the risk flags cannot drift apart.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CLASSES_FILE = Path(__file__).with_name("classes.json")
RISKS = ("malignant", "pre-malignant", "benign")


@dataclass(frozen=True)
class LesionClass:
    code: str
    name: str
    name_zh: str
    risk: str
    description: str
    description_zh: str

    @property
    def is_concerning(self) -> bool:
        """True for classes a user should see a doctor about (malignant or pre-malignant)."""
        return self.risk != "benign"


def load_classes(path: Path = CLASSES_FILE) -> tuple[LesionClass, ...]:
    """Read and validate the class list; raises ValueError on a malformed file."""
    entries = json.loads(path.read_text(encoding="utf-8"))["classes"]
    classes = tuple(LesionClass(**entry) for entry in entries)
    codes = [c.code for c in classes]
    if len(set(codes)) != len(codes):
        raise ValueError(f"duplicate class codes in {path}: {codes}")
    unknown = {c.risk for c in classes} - set(RISKS)
    if unknown:
        raise ValueError(f"unknown risk flags in {path}: {sorted(unknown)}")
    return classes


CLASSES = load_classes()
CODES: tuple[str, ...] = tuple(c.code for c in CLASSES)
NUM_CLASSES = len(CLASSES)
BY_CODE = {c.code: c for c in CLASSES}
