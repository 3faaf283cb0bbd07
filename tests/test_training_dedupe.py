"""Byte-identical images, after the split: one copy kept, lesions that share an image gathered in
train, copies that disagree on the label dropped, and the split otherwise the earlier releases'."""
from __future__ import annotations

from pathlib import Path

from tests.fixtures.training.make_data import make_labels_csv
from training.datasets import Sample
from training.dedupe import deduplicate
from training.splits import load_split


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_copies_across_parts_move_to_train_and_conflicting_labels_are_dropped(tmp_path: Path) -> None:
    a, b, c, d = (write(tmp_path / f"{name}.jpg", name.encode() * 10) for name in "abcd")
    same_as_a = write(tmp_path / "a2.jpg", a.read_bytes())
    same_as_c = write(tmp_path / "c2.jpg", c.read_bytes())
    samples = [Sample(a, 4, "L1", "ham"), Sample(b, 5, "L2", "ham"),
               Sample(same_as_a, 4, "L3", "bcn"),  # a's copy under another lesion, in test
               Sample(d, 4, "L3", "bcn"),  # another photo of L3
               Sample(c, 4, "L4", "bcn"), Sample(same_as_c, 5, "L5", "bcn")]  # MEL against NV
    parts = ["train", "val", "test", "test", "val", "val"]

    kept, kept_parts, report = deduplicate(samples, parts)

    assert [samples[i].path.name for i in kept] == ["a.jpg", "b.jpg", "d.jpg"]
    # L3 shares an image with L1 in train: all of L3, its other photo too, goes to train.
    assert kept_parts == ["train", "val", "train"]
    assert report.as_dict() == {"copies_dropped": 1, "moved_to_train": 1, "conflicting_groups": 1,
                                "conflicting_images": 2}


def test_the_split_stays_the_undeduplicated_one(tmp_path: Path) -> None:
    ham = make_labels_csv(tmp_path / "ham", per_class=9, images_per_lesion=2)
    images = ham / "images"
    # The second shot of lesion 0 of class 0 is a copy of lesion 1's first shot.
    (images / "ISIC_00001.jpg").write_bytes((images / "ISIC_00010.jpg").read_bytes())
    before, old = load_split([ham], seed=0, deduplicated=False)[:2]
    samples, split, report = load_split([ham], seed=0, deduplicated=True)

    assert report.copies_dropped == 1
    joined = {"ISIC_00000.jpg", "ISIC_00001.jpg", "ISIC_00010.jpg", "ISIC_00011.jpg"}
    where = {samples[i].path.name: name for name in ("train", "val", "test") for i in getattr(split, name)}
    was = {before[i].path.name: name for name in ("train", "val", "test") for i in getattr(old, name)}
    assert len({where[name] for name in joined & where.keys()}) == 1
    assert len(joined & where.keys()) == 3
    assert {name: part for name, part in where.items() if name not in joined} == {
        name: part for name, part in was.items() if name not in joined}
