"""Classification metrics for the report: scikit-learn where it has them, BMA and ECE here."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, recall_score, roc_auc_score

from contract.classes import CODES

ECE_BINS = 15


def balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean per-class recall (BMA) over the classes present in ``labels``. Counted here, not by
    scikit-learn, whose argument checks cost milliseconds a call: the logit biases' search scores
    about a thousand candidates at every validation."""
    size = int(max(labels.max(initial=0), predictions.max(initial=0))) + 1
    support = np.bincount(labels, minlength=size)
    hits = np.bincount(labels[labels == predictions], minlength=size)
    present = support > 0
    return float((hits[present] / support[present]).mean())


def sensitivity_specificity(labels: np.ndarray, predictions: np.ndarray) -> dict[str, dict]:
    """Per-class one-vs-rest sensitivity (recall), specificity and support, keyed by class code."""
    classes = list(range(len(CODES)))
    sensitivity = recall_score(labels, predictions, labels=classes, average=None, zero_division=0)
    matrix = confusion_matrix(labels, predictions, labels=classes)
    positives = matrix.sum(axis=1)
    negatives = matrix.sum() - positives
    false_positives = matrix.sum(axis=0) - np.diag(matrix)
    specificity = np.divide(negatives - false_positives, negatives,
                            out=np.zeros(len(classes)), where=negatives > 0)
    # A class absent from ``labels`` has no sensitivity (None), rather than a misleading 0.
    return {code: {"sensitivity": float(sensitivity[i]) if positives[i] else None,
                   "specificity": float(specificity[i]) if negatives[i] else None,
                   "support": int(positives[i])}
            for i, code in enumerate(CODES)}


def one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """ROC AUC of each class against the rest (None when a class is absent) and their macro mean."""
    aucs: dict[str, float | None] = {}
    for index, code in enumerate(CODES):
        positives = labels == index
        aucs[code] = (float(roc_auc_score(positives, probabilities[:, index]))
                      if 0 < positives.sum() < len(labels) else None)
    present = [auc for auc in aucs.values() if auc is not None]
    aucs["macro"] = float(np.mean(present)) if present else None
    return aucs


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE of the top-1 confidence over ``bins`` equal-width bins, weighted by bin population."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # A confidence on an edge belongs to the lower bin, (lo, hi], as in Guo et al. (2017).
    bin_index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = bin_index == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def confusion(labels: np.ndarray, predictions: np.ndarray) -> list[list[int]]:
    """Confusion matrix (rows true class, columns predicted) in the model's class order."""
    return confusion_matrix(labels, predictions, labels=list(range(len(CODES)))).tolist()
