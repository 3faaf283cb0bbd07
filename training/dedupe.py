"""Byte-identical images, found by content hash before the split.

The shared data hold the same file under several image ids: some carry different lesion ids (so a
copy could sit in train and another in test), a few different labels. Identical images join one
lesion group, one copy of each is kept, and a group whose copies disagree on the label is dropped.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace

from training.datasets import Sample


@dataclass(frozen=True)
class DedupeReport:
    copies_dropped: int  # images whose identical twin was kept
    lesions_merged: int  # lesion ids joined to another because they share an image
    conflicting_groups: int  # sets of identical images with more than one label, all dropped
    conflicting_images: int

    def as_dict(self) -> dict[str, int]:
        return {"copies_dropped": self.copies_dropped, "lesions_merged": self.lesions_merged,
                "conflicting_groups": self.conflicting_groups, "conflicting_images": self.conflicting_images}


def content_hash(sample: Sample) -> str:
    return hashlib.sha256(sample.path.read_bytes()).hexdigest()


def deduplicate(folders: list[list[Sample]]) -> tuple[list[list[Sample]], DedupeReport]:
    """``folders`` with one copy of each distinct image, the lesions that share an image joined
    under one lesion id, and identical images with conflicting labels removed."""
    copies: dict[str, list[tuple[int, Sample]]] = defaultdict(list)
    for number, folder in enumerate(folders):
        for sample in folder:
            copies[content_hash(sample)].append((number, sample))
    conflicting = [group for group in copies.values() if len({s.label for _, s in group}) > 1]
    # Union-find over lesion ids, linked by the images they share.
    parent: dict[str, str] = {}

    def root(lesion: str) -> str:
        while parent.get(lesion, lesion) != lesion:
            lesion = parent[lesion]
        return lesion

    for group in copies.values():
        first = root(group[0][1].lesion_id)
        for _, sample in group[1:]:
            other = root(sample.lesion_id)
            if other != first:
                parent[max(first, other)] = min(first, other)
                first = min(first, other)
    kept: list[list[Sample]] = [[] for _ in folders]
    dropped = 0
    for group in copies.values():
        if len({s.label for _, s in group}) > 1:
            continue
        number, sample = group[0]
        kept[number].append(replace(sample, lesion_id=root(sample.lesion_id)))
        dropped += len(group) - 1
    for folder in kept:
        folder.sort(key=lambda sample: str(sample.path))
    lesions = {s.lesion_id for folder in folders for s in folder}
    report = DedupeReport(dropped, sum(root(lesion) != lesion for lesion in lesions), len(conflicting),
                          sum(len(group) for group in conflicting))
    return kept, report
