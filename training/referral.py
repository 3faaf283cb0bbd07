"""The referral flag ("see a dermatologist soon"): its score, its validation-chosen threshold and
how well it separates malignant and pre-malignant lesions from benign ones."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from contract.classes import CLASSES, CODES

CONCERNING = np.array([c.is_concerning for c in CLASSES])
TARGET_SENSITIVITY = 0.95


def concern_score(probabilities: np.ndarray) -> np.ndarray:
    """The probability the model gives to any malignant or pre-malignant class (MEL, BCC, SCC, AK)."""
    return probabilities[:, CONCERNING].sum(axis=1)


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray,
                     target: float = TARGET_SENSITIVITY) -> float:
    """The highest threshold whose flag still catches ``target`` of the concerning lesions: the most
    specific operating point at that sensitivity."""
    scores = np.sort(concern_score(probabilities)[CONCERNING[labels]])
    if not len(scores):
        raise ValueError("no malignant or pre-malignant lesion to choose a referral threshold on")
    # Flagging at scores[k] and above catches len - k of them; keep k as large as the target allows.
    allowed_misses = int(np.floor(len(scores) * (1 - target) + 1e-9))
    return float(scores[allowed_misses])


def specificity(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> float | None:
    """The share of benign lesions that flagging at ``threshold`` leaves unflagged (None: none)."""
    benign = ~CONCERNING[labels]
    return float((concern_score(probabilities[benign]) < threshold).mean()) if benign.any() else None


def referral_report(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Sensitivity and specificity of flagging at ``threshold``, and the score's AUROC."""
    concerning = CONCERNING[labels]
    flagged = concern_score(probabilities) >= threshold
    both = 0 < concerning.sum() < len(labels)
    return {"threshold": threshold,
            "sensitivity": float(flagged[concerning].mean()) if concerning.any() else None,
            "specificity": specificity(labels, probabilities, threshold),
            "auroc": float(roc_auc_score(concerning, concern_score(probabilities))) if both else None,
            "concerning": int(concerning.sum()), "benign": int((~concerning).sum())}


def referral_entry(threshold: float, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """A release's referral entry: the flag's classes, its threshold, and how flagging at it does on
    each named split's (labels, probabilities)."""
    return {"classes": [code for code, concerning in zip(CODES, CONCERNING) if concerning],
            "target_sensitivity": TARGET_SENSITIVITY, "threshold": threshold} | {
        name: referral_report(labels, probabilities, threshold) for name, (labels, probabilities) in splits.items()}
