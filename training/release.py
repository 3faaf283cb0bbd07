"""The release metadata written beside the weights (handler.checkpoint.save_release)."""
from __future__ import annotations

import argparse

import numpy as np

from handler.classes import CODES
from handler.preprocessing import MEAN, STD
from training.datasets import Sample, class_counts, detect_layout
from training.splits import Split

RELEASE_NAME = "skin"
RELEASE_ARCH = "resnet34"
REPORTED_METRICS = ("balanced_accuracy", "accuracy", "per_class", "auc", "ece_before_calibration",
                    "ece_after_calibration", "val_balanced_accuracy", "teacher")


def release_metadata(args: argparse.Namespace, samples: list[Sample], split: Split, report: dict,
                     temperature: float, commit: str, training: dict) -> dict:
    """Everything the handler needs (name, version, classes, input size, mean/std, temperature) plus
    where the model came from: data, split, test metrics, training run and commit."""
    speeds = [entry["images_per_second"] for entry in training["history"]]
    return {
        "name": RELEASE_NAME,
        "version": args.version,
        "arch": RELEASE_ARCH,
        "classes": list(CODES),
        "input_size": args.image_size,
        "mean": list(MEAN),
        "std": list(STD),
        "temperature": temperature,
        "data": {"description": f"{args.data.name} ({detect_layout(args.data)} layout)",
                 "images": len(samples), "lesions": len({s.lesion_id for s in samples}),
                 "counts": class_counts(samples)},
        "split": {"description": "grouped by lesion_id, stratified by class (StratifiedGroupKFold), "
                                 "about 70/15/15 train/val/test",
                  "seed": args.seed, "sizes": split.sizes()},
        "metrics": {"split": "test"} | {key: report[key] for key in REPORTED_METRICS},
        "training": {"image_size": args.image_size, "batch_size": args.batch_size,
                     "images_per_second": round(float(np.mean(speeds)), 1) if speeds else None}
                    | training,
        "commit": commit,
    }
