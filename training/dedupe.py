"""Byte-identical images, found by content hash once the split is made.

The shared data hold the same file under several image ids: some carry different lesion ids (so a
copy could sit in train and another in test), a few different labels. The split is made first, on
every image, so that it stays the one earlier releases trained on (a release warm-started from one
of them must not have seen the new validation or test images). Then lesions that share an image are
treated as one; where such a group spans parts of the split, all of it moves to train, so validation
and test hold no image that either release trained on. One copy of each image is kept, and copies
that disagree on the label are dropped.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from training.datasets import Sample

TRAIN = "train"


@dataclass(frozen=True)
class DedupeReport:
    copies_dropped: int  # images whose identical twin was kept
    moved_to_train: int  # validation or test images whose lesion shares an image with another part
    conflicting_groups: int  # sets of identical images with more than one label, all dropped
    conflicting_images: int

    def as_dict(self) -> dict[str, int]:
        return {"copies_dropped": self.copies_dropped, "moved_to_train": self.moved_to_train,
                "conflicting_groups": self.conflicting_groups, "conflicting_images": self.conflicting_images}


def content_hash(sample: Sample) -> str:
    return hashlib.sha256(sample.path.read_bytes()).hexdigest()


def deduplicate(samples: list[Sample], parts: list[str]) -> tuple[list[int], list[str], DedupeReport]:
    """Given each sample's part of the split (``parts``), the indices of the samples kept (one copy
    of each distinct image, none whose copies disagree on the label) and each kept sample's part,
    with lesions that share an image gathered in one part."""
    copies: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        copies[content_hash(sample)].append(index)
    # Union-find over lesion ids, linked by the images they share.
    parent: dict[str, str] = {}

    def root(lesion: str) -> str:
        while parent.get(lesion, lesion) != lesion:
            lesion = parent[lesion]
        return lesion

    for group in copies.values():
        first = root(samples[group[0]].lesion_id)
        for index in group[1:]:
            other = root(samples[index].lesion_id)
            if other != first:
                parent[max(first, other)] = min(first, other)
                first = min(first, other)
    spanned: dict[str, set[str]] = defaultdict(set)
    for sample, part in zip(samples, parts):
        spanned[root(sample.lesion_id)].add(part)
    conflicting = [group for group in copies.values() if len({samples[i].label for i in group}) > 1]
    kept = sorted(group[0] for group in copies.values() if len({samples[i].label for i in group}) == 1)
    moved = [len(spanned[root(samples[i].lesion_id)]) > 1 for i in kept]
    report = DedupeReport(
        copies_dropped=sum(len(group) - 1 for group in copies.values() if group not in conflicting),
        moved_to_train=sum(move and parts[i] != TRAIN for i, move in zip(kept, moved)),
        conflicting_groups=len(conflicting), conflicting_images=sum(len(group) for group in conflicting))
    return kept, [TRAIN if move else parts[i] for i, move in zip(kept, moved)], report
