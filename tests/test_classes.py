"""One class list: training, the handler, the model, the frontend and the archive agree on it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.classes import CLASSES, CLASSES_FILE, CODES, NUM_CLASSES, load_classes
from handler.model import NUM_OUTPUTS, SkinResNet34
from training.datasets import read_samples

ISIC_2019_ORDER = ("AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC")


def test_the_class_file_lists_the_eight_isic_2019_classes_once():
    assert CODES == ISIC_2019_ORDER and NUM_CLASSES == 8
    entries = json.loads(CLASSES_FILE.read_text(encoding="utf-8"))["classes"]
    assert [entry["code"] for entry in entries] == list(CODES)
    assert all(c.name and c.name_zh and c.description and c.description_zh for c in CLASSES)


def test_the_model_head_has_one_output_per_class():
    assert NUM_OUTPUTS == NUM_CLASSES
    assert SkinResNet34().fc.out_features == NUM_CLASSES


def test_training_labels_index_the_same_list(tmp_path: Path, fixture_images):
    # Class folders are named by code; training must number them in the class file's order.
    for name, data in fixture_images.items():
        code = name.split("_")[0]
        (tmp_path / code).mkdir()
        (tmp_path / code / name).write_bytes(data)
    samples = read_samples(tmp_path)
    assert {sample.path.parent.name: CODES[sample.label] for sample in samples} == {c: c for c in CODES}


def test_a_malformed_class_file_is_refused(tmp_path: Path):
    broken = json.loads(CLASSES_FILE.read_text(encoding="utf-8"))
    broken["classes"][1]["code"] = "AK"
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        load_classes(path)
