"""The release metadata written beside the weights (handler.checkpoint.save_release)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contract.classes import CODES
from handler.preprocessing import MEAN, SHADES_OF_GRAY_POWER, STD
from training.datasets import Sample, class_counts, detect_layout
from training.splits import Split

RELEASE_NAME = "skin"
RELEASE_ARCH = "resnet34"
REPORTED_METRICS = ("balanced_accuracy", "accuracy", "per_class", "auc", "ece_before_calibration",
                    "ece_after_calibration", "val_balanced_accuracy", "teacher", "by_source",
                    "val_by_source", "logit_bias", "dihedral_tta_val_balanced_accuracy")


def release_metadata(*, version: str, image_size: tuple[int, int], colour_constancy: bool,
                     data_dirs: list[Path], seed: int, samples: list[Sample], split: Split, report: dict,
                     temperature: float, referral: dict, commit: str, training: dict) -> dict:
    """Everything the handler needs (name, version, classes, input size, colour constancy, mean/std,
    temperature, referral threshold) plus where the model came from: data, split, test metrics,
    training run (``training``: its settings and history) and commit."""
    speeds = [entry["images_per_second"] for phase in training["phases"].values() for entry in phase["history"]]
    return {
        "name": RELEASE_NAME,
        "version": version,
        "arch": RELEASE_ARCH,
        "classes": list(CODES),
        "input_size": list(image_size),
        "colour_constancy": ({"method": "shades_of_gray", "power": SHADES_OF_GRAY_POWER}
                             if colour_constancy else None),
        "mean": list(MEAN),
        "std": list(STD),
        "temperature": temperature,
        "referral": referral,
        "data": {"description": ", ".join(f"{d.name} ({detect_layout(d)} layout)" for d in data_dirs),
                 "images": len(samples), "lesions": len({s.lesion_id for s in samples}),
                 "counts": class_counts(samples),
                 "sources": {source: sum(s.source == source for s in samples)
                             for source in sorted({s.source for s in samples})}},
        "split": {"description": "within each data folder: grouped by lesion_id, stratified by class "
                                 "(StratifiedGroupKFold), about 70/15/15 train/val/test, as for "
                                 "earlier releases; then byte-identical copies dropped, and lesions "
                                 "that share an image across parts moved to train (training.dedupe)",
                  "seed": seed, "deduplicated": True, "sizes": split.sizes()},
        "metrics": {"split": "test"} | {key: report[key] for key in REPORTED_METRICS},
        "training": {"image_size": list(image_size),
                     "images_per_second": round(float(np.mean(speeds)), 1) if speeds else None}
                    | training,
        "commit": commit,
    }
