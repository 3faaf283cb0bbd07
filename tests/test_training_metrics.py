import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from contract.classes import CODES
from training import metrics
from training.calibration import choose_temperature
from training.report import by_source

# Hand-made case over classes 0-2 (AK, BCC, BKL):
#   true AK  (4): predicted AK, AK, AK, BCC   -> sensitivity 3/4
#   true BCC (2): predicted BCC, BKL          -> sensitivity 1/2
#   true BKL (4): predicted BKL x4            -> sensitivity 1
LABELS = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
PREDICTIONS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])


def test_balanced_accuracy_by_hand() -> None:
    assert metrics.balanced_accuracy(LABELS, PREDICTIONS) == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)


def test_balanced_accuracy_agrees_with_scikit_learn() -> None:
    generator = np.random.default_rng(0)
    for images, classes in [(1, 1), (7, 3), (500, 8)]:
        labels, predictions = generator.integers(0, classes, images), generator.integers(0, len(CODES), images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # predictions name classes absent from the labels
            expected = balanced_accuracy_score(labels, predictions)
        assert metrics.balanced_accuracy(labels, predictions) == pytest.approx(expected)


def test_sensitivity_and_specificity_by_hand() -> None:
    per_class = metrics.sensitivity_specificity(LABELS, PREDICTIONS)
    assert list(per_class) == list(CODES)
    assert per_class["AK"] == {"sensitivity": 0.75, "specificity": 1.0, "support": 4}
    # BCC: 8 negatives, one AK called BCC.  BKL: 6 negatives, one BCC called BKL.
    assert per_class["BCC"] == {"sensitivity": 0.5, "specificity": pytest.approx(7 / 8), "support": 2}
    assert per_class["BKL"] == {"sensitivity": 1.0, "specificity": pytest.approx(5 / 6), "support": 4}
    assert per_class["MEL"] == {"sensitivity": None, "specificity": 1.0, "support": 0}


def test_confusion_matrix_layout() -> None:
    matrix = np.array(metrics.confusion(LABELS, PREDICTIONS))
    assert matrix.shape == (len(CODES), len(CODES))
    assert matrix[:3, :3].tolist() == [[3, 1, 0], [0, 1, 1], [0, 0, 4]]
    assert matrix.sum() == len(LABELS)


def test_by_source_scores_each_collection_alone() -> None:
    # Clinic "a" is classified perfectly; clinic "b" misses one of its two AK.
    labels = torch.tensor([0, 1, 0, 0, 1])
    logits = torch.eye(len(CODES))[torch.tensor([0, 1, 0, 1, 1])]
    report = by_source(logits, labels, ["a", "a", "b", "b", "b"])
    assert list(report) == ["a", "b"]
    assert report["a"]["images"] == 2 and report["a"]["balanced_accuracy"] == 1.0
    assert report["b"]["images"] == 3 and report["b"]["balanced_accuracy"] == pytest.approx(0.75)
    assert report["b"]["sensitivity"]["AK"] == 0.5 and report["b"]["sensitivity"]["MEL"] is None


def rows(confidences: list[float], top: list[int]) -> np.ndarray:
    """Probability rows with ``confidence`` on class ``top`` and the rest spread evenly."""
    out = np.empty((len(confidences), len(CODES)))
    for i, (confidence, cls) in enumerate(zip(confidences, top)):
        out[i] = (1 - confidence) / (len(CODES) - 1)
        out[i, cls] = confidence
    return out


def test_ece_by_hand() -> None:
    # Bin (14/15, 1]: confidence 0.95, accuracy 1/2.  Bin (8/15, 9/15]: confidence 0.55, accuracy 1.
    probabilities = rows([0.95, 0.95, 0.55, 0.55], [0, 1, 2, 3])
    labels = np.array([0, 0, 2, 3])
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55)
    assert metrics.expected_calibration_error(labels, probabilities) == pytest.approx(expected)


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    probabilities = rows([0.75] * 4, [0, 0, 0, 0])
    assert metrics.expected_calibration_error(np.array([0, 0, 0, 1]), probabilities) == pytest.approx(0)


def test_auc_separable_and_macro() -> None:
    labels = np.repeat(np.arange(len(CODES)), 3)
    aucs = metrics.one_vs_rest_auc(labels, np.eye(len(CODES))[labels])
    assert all(aucs[code] == 1.0 for code in CODES)
    assert aucs["macro"] == 1.0


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_temperature_undoes_over_and_underconfidence(scale: float) -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, len(CODES), generator=generator) * 2
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=generator).squeeze(1)
    assert choose_temperature(true_logits * scale, labels) == pytest.approx(scale, rel=0.05)
