"""The evaluation report (metrics JSON and confusion-matrix plot) for one set of logits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from contract.classes import CODES
from training import metrics


def build_report(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> dict:
    """Every reported metric for ``logits`` on ``labels``; ECE both raw and at ``temperature``."""
    y = labels.numpy()
    raw = torch.softmax(logits.float(), dim=1).numpy()
    calibrated = torch.softmax(logits.float() / temperature, dim=1).numpy()
    predictions = raw.argmax(axis=1)
    return {
        "images": int(len(y)),
        "counts": {code: int((y == i).sum()) for i, code in enumerate(CODES)},
        "balanced_accuracy": metrics.balanced_accuracy(y, predictions),
        "accuracy": float((predictions == y).mean()),
        "per_class": metrics.sensitivity_specificity(y, predictions),
        "auc": metrics.one_vs_rest_auc(y, calibrated),
        "temperature": float(temperature),
        "ece_before_calibration": metrics.expected_calibration_error(y, raw),
        "ece_after_calibration": metrics.expected_calibration_error(y, calibrated),
        "ece_bins": metrics.ECE_BINS,
        "confusion_matrix": {"classes": list(CODES), "rows": "true class", "columns": "predicted",
                             "matrix": metrics.confusion(y, predictions)},
    }


def by_source(logits: torch.Tensor, labels: torch.Tensor, sources: list[str]) -> dict[str, dict]:
    """BMA and per-class sensitivity for each source (clinic or collection) of the images."""
    y, predictions = labels.numpy(), logits.argmax(1).numpy()
    result = {}
    for source in sorted(set(sources)):
        members = np.array([s == source for s in sources])
        per_class = metrics.sensitivity_specificity(y[members], predictions[members])
        result[source] = {"images": int(members.sum()),
                          "balanced_accuracy": metrics.balanced_accuracy(y[members], predictions[members]),
                          "sensitivity": {code: entry["sensitivity"] for code, entry in per_class.items()}}
    return result


def val_figures(logits: torch.Tensor, labels: torch.Tensor, sources: list[str]) -> dict:
    """What a release is compared on: its balanced accuracy and its melanoma sensitivity per source,
    from the logits it serves (logit biases included)."""
    return {"balanced_accuracy": metrics.balanced_accuracy(labels.numpy(), logits.argmax(1).numpy()),
            "mel_sensitivity_by_source": {source: figures["sensitivity"]["MEL"]
                                          for source, figures in by_source(logits, labels, sources).items()}}


def share(value: float | None) -> str:
    """A share to three places for a log line or a table, or - where there is none (a source that
    holds none of the class, a figure that could not be computed)."""
    return "-" if value is None or np.isnan(value) else f"{value:.3f}"


def plot_confusion(matrix: list[list[int]], path: Path, title: str) -> None:
    """Save the confusion matrix, row-normalised colours with raw counts written in, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(matrix)
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(CODES)), CODES)
    axes.set_yticks(range(len(CODES)), CODES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(len(CODES)):
        for column in range(len(CODES)):
            axes.text(column, row, str(counts[row, column]), ha="center", va="center",
                      color="white" if recall[row, column] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(report: dict, json_path: Path, png_path: Path, title: str) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_confusion(report["confusion_matrix"]["matrix"], png_path, title)


def write_model_report(report: dict, referral: dict, metadata: dict, json_path: Path) -> None:
    """A shipped release's test report (docs/model_report.json) with its referral entry and training
    run, and its confusion matrix as confusion_matrix.png beside it."""
    write_report(report | {"release": {key: metadata.get(key) for key in ("name", "version", "input_size", "commit")},
                           "referral": referral, "training": metadata.get("training")},
                 json_path, json_path.with_name("confusion_matrix.png"),
                 f"SkinResNet34 {metadata['version']}, test split (BMA {report['balanced_accuracy']:.3f})")
