"""Byte-identical images are found before the split: one copy kept, their lesions joined, and
copies that disagree on the label dropped."""
from __future__ import annotations

from pathlib import Path

from tests.fixtures.training.make_data import make_labels_csv
from training.datasets import Sample
from training.dedupe import deduplicate
from training.splits import load_split


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_copies_join_lesions_and_conflicting_labels_are_dropped(tmp_path: Path) -> None:
    a, b, c = (write(tmp_path / f"{name}.jpg", name.encode() * 10) for name in "abc")
    same_as_a = write(tmp_path / "a2.jpg", a.read_bytes())
    same_as_c = write(tmp_path / "c2.jpg", c.read_bytes())
    folders = [[Sample(a, 4, "L1", "ham"), Sample(b, 5, "L2", "ham")],
               [Sample(same_as_a, 4, "L3", "bcn"),  # a's copy under another lesion and folder
                Sample(c, 4, "L4", "bcn"), Sample(same_as_c, 5, "L5", "bcn")]]  # MEL against NV

    kept, report = deduplicate(folders)

    assert [[s.path.name for s in folder] for folder in kept] == [["a.jpg", "b.jpg"], []]
    # L3 joins L1; L5 joins L4 too, though their shared image is dropped, so that their other
    # photos cannot land on both sides of the split.
    assert report.as_dict() == {"copies_dropped": 1, "lesions_merged": 2, "conflicting_groups": 1,
                                "conflicting_images": 2}


def test_a_lesion_that_shares_an_image_moves_whole_into_one_split(tmp_path: Path) -> None:
    ham = make_labels_csv(tmp_path / "ham", per_class=9, images_per_lesion=2)
    images = ham / "images"
    # The second shot of lesion 0 of class 0 is a copy of lesion 1's first shot.
    (images / "ISIC_00001.jpg").write_bytes((images / "ISIC_00010.jpg").read_bytes())
    samples, split, report = load_split([ham], seed=0, deduplicated=True)
    assert report.copies_dropped == 1 and report.lesions_merged == 1
    where = {name: {samples[i].path.name for i in getattr(split, name)} for name in ("train", "val", "test")}
    joined = {"ISIC_00000.jpg", "ISIC_00010.jpg", "ISIC_00011.jpg"}
    assert sum(bool(joined & names) for names in where.values()) == 1
