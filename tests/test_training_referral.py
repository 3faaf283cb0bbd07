"""The referral flag: its threshold (the most specific one at 95% sensitivity) and its report."""
from __future__ import annotations

import numpy as np
import pytest

from contract.classes import CODES
from training.referral import CONCERNING, choose_threshold, concern_score, referral_report

MEL, NV = CODES.index("MEL"), CODES.index("NV")


def scored(labels: list[int], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Probability rows whose concern score is ``scores``: the score on MEL, the rest on NV."""
    probabilities = np.zeros((len(scores), len(CODES)))
    probabilities[:, MEL], probabilities[:, NV] = scores, 1 - np.array(scores)
    return np.array(labels), probabilities


def test_concern_score_sums_the_malignant_and_pre_malignant_classes() -> None:
    assert [CODES[i] for i in np.flatnonzero(CONCERNING)] == ["AK", "BCC", "MEL", "SCC"]
    assert concern_score(np.full((1, len(CODES)), 1 / len(CODES))) == pytest.approx(0.5)


def test_threshold_is_the_highest_that_keeps_95_percent_sensitivity() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CODES), 500)
    # A noisy but informative model: concerning lesions get more weight on concerning classes.
    logits = rng.normal(size=(500, len(CODES))) + 1.5 * np.outer(CONCERNING[labels], CONCERNING)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    threshold = choose_threshold(labels, probabilities)
    assert 0 <= threshold <= 1
    assert referral_report(labels, probabilities, threshold)["sensitivity"] >= 0.95
    assert referral_report(labels, probabilities, np.nextafter(threshold, 1))["sensitivity"] < 0.95


def test_threshold_by_hand() -> None:
    # 20 concerning lesions: 5% may be missed, so the flag starts at the second-lowest score.
    labels, probabilities = scored([MEL] * 20 + [NV] * 3, [i / 20 for i in range(1, 21)] + [0.9] * 3)
    assert choose_threshold(labels, probabilities) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no malignant"):
        choose_threshold(np.array([NV]), probabilities[:1])


def test_report_by_hand() -> None:
    labels, probabilities = scored([MEL, MEL, MEL, MEL, NV, NV, NV, NV],
                                   [0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.05])
    report = referral_report(labels, probabilities, 0.5)
    # Flagged at 0.5: three of four concerning (0.3 missed), one of four benign (0.7).
    # AUROC: of 16 concerning-benign pairs, only 0.3 < 0.7 and 0.6 < 0.7 are ordered wrongly.
    assert report == {"threshold": 0.5, "sensitivity": 0.75, "specificity": 0.75,
                      "auroc": pytest.approx(14 / 16), "concerning": 4, "benign": 4}
