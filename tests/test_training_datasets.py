from pathlib import Path

import pytest

from contract.classes import CODES
from tests.fixtures.training.make_data import make_class_folders, make_isic2019, make_labels_csv
from training.datasets import class_counts, detect_layout, read_folders, read_samples


def test_labels_csv_layout(tmp_path: Path) -> None:
    root = make_labels_csv(tmp_path, per_class=2, images_per_lesion=2)
    samples = read_samples(root)
    assert detect_layout(root) == "labels_csv"
    assert len(samples) == 2 * 2 * len(CODES)
    assert class_counts(samples) == {code: 4 for code in CODES}
    assert len({s.lesion_id for s in samples}) == 2 * len(CODES)
    assert all(s.path.is_file() and s.path.stem.startswith(f"ISIC_{s.label}") for s in samples)


def test_class_folder_layout(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, per_class=3)
    samples = read_samples(root)
    assert detect_layout(root) == "class_folders"
    assert class_counts(samples) == {code: 3 for code in CODES}
    # Without lesion ids every image is its own lesion.
    assert all(s.lesion_id == s.path.stem for s in samples)
    assert all(CODES[s.label] == s.path.parent.name for s in samples)


@pytest.mark.parametrize("with_metadata", [True, False])
@pytest.mark.parametrize("image_folder", [True, False])
def test_isic2019_layout(tmp_path: Path, with_metadata: bool, image_folder: bool) -> None:
    root = make_isic2019(tmp_path, per_class=3, with_metadata=with_metadata, image_folder=image_folder)
    samples = read_samples(root)
    assert detect_layout(root) == "isic2019"
    # The UNK image is dropped; the one-hot columns map onto our class order.
    assert class_counts(samples) == {code: 3 for code in CODES}
    assert all(s.path.stem.startswith(f"ISIC_{s.label}") for s in samples)
    by_image = {s.path.stem: s.lesion_id for s in samples}
    if with_metadata:
        assert by_image["ISIC_00001"] == "BCN_00"
        assert by_image["ISIC_00000"] == "ISIC_00000"  # empty lesion_id falls back to the image id
    else:
        assert all(lesion == image for image, lesion in by_image.items())


def test_each_folder_is_read_with_its_source(tmp_path: Path) -> None:
    # The source names a clinic or collection in per-source reports: labels.csv's source column,
    # else the folder's name.
    folders = read_folders([make_labels_csv(tmp_path / "ham10000", per_class=1),
                            make_class_folders(tmp_path / "derm7pt", per_class=1),
                            make_isic2019(tmp_path / "isic2019", per_class=1),
                            make_labels_csv(tmp_path / "mixed", per_class=1, source="BCN20000")])
    assert [len(folder) for folder in folders] == [len(CODES)] * 4
    assert [{s.source for s in folder} for folder in folders] == [
        {"ham10000"}, {"derm7pt"}, {"isic2019"}, {"BCN20000"}]
    assert all(s.path.is_relative_to(tmp_path / "derm7pt") for s in folders[1])


def test_unknown_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_samples(tmp_path)
