"""What a release decides on validation after training: per-class logit biases, whether
test-time augmentation pays, the temperature and the referral threshold. The test split never
enters here."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from scipy.special import softmax

from contract.classes import CODES
from training.calibration import choose_temperature
from training.engine import predict
from training.metrics import balanced_accuracy
from training.mixed_precision import Precision
from training.referral import CONCERNING, choose_threshold, referral_report, specificity
from training.report import val_figures

MEL = CODES.index("MEL")
# The source whose melanomas a new release must find more of: the one whose nevi outnumber its
# melanomas, where a shortcut through the equipment misses them.
HAM_SOURCE = "ham10000"
# The melanoma sensitivity a release's logit biases must reach on validation, where they can.
MEL_FLOOR = 0.80
BIAS_GRID = np.round(np.arange(-2.0, 2.01, 0.1), 2)
# What one point of the referral flag's specificity is worth against one point of BMA when the
# biases are fitted; chosen on the validation logits of 3.0 and 3.1 (`make recalibrate` prints the
# figures of each weight it shows), where a larger weight bought the flag little more and cost BMA.
REFERRAL_WEIGHT = 0.5
# Eight dihedral views cost eight forward passes; they must buy at least this much validation BMA.
TTA_MIN_GAIN = 0.01


def mel_sensitivity(labels: np.ndarray, predictions: np.ndarray) -> float:
    melanomas = labels == MEL
    return float((predictions[melanomas] == MEL).mean()) if melanomas.any() else 1.0


def flag_specificity(labels: np.ndarray, logits: np.ndarray) -> float:
    """The referral flag's specificity on these images (softmax before temperature scaling) at the
    threshold that gives it its target sensitivity on them."""
    probabilities = softmax(logits.astype(np.float32), axis=1)
    return specificity(labels, probabilities, choose_threshold(labels, probabilities))


def choose_logit_bias(logits: torch.Tensor, labels: torch.Tensor, mel_floor: float = MEL_FLOOR,
                      referral_weight: float = REFERRAL_WEIGHT, rounds: int = 3) -> tuple[np.ndarray, dict]:
    """Per-class additive logit biases that maximise validation BMA plus ``referral_weight`` times
    the referral flag's specificity (at its target sensitivity, before temperature scaling) while
    melanoma sensitivity stays at or above ``mel_floor`` (coordinate ascent on a grid); returns
    them with the figures before and after. A shortfall below the floor costs ten times its size in
    the objective, so where the floor cannot be reached the biases get as close to it as BMA
    allows."""
    scores, y = logits.float().numpy(), labels.numpy()
    # The flag sums the probabilities of the concerning classes, so the biases that push melanomas
    # up the ranking also push nevi over the flag's threshold; BMA alone cannot see that cost.
    has_flag = CONCERNING[y].any() and not CONCERNING[y].all()

    def objective(bias: np.ndarray) -> float:
        predictions = (scores + bias).argmax(axis=1)
        shortfall = max(0.0, mel_floor - mel_sensitivity(y, predictions))
        flag = referral_weight * flag_specificity(y, scores + bias) if has_flag and referral_weight else 0.0
        return balanced_accuracy(y, predictions) - 10 * shortfall + flag

    bias = np.zeros(len(CODES))
    for _ in range(rounds):
        for index in range(len(CODES)):
            candidates = [np.where(np.arange(len(CODES)) == index, value, bias) for value in BIAS_GRID]
            bias = max(candidates, key=objective)
    bias -= bias.mean()  # only differences between classes matter

    def figures(b: np.ndarray) -> dict:
        predictions = (scores + b).argmax(axis=1)
        return {"balanced_accuracy": balanced_accuracy(y, predictions),
                "mel_sensitivity": mel_sensitivity(y, predictions)} | (
            {"referral_specificity": flag_specificity(y, scores + b)} if has_flag else {})

    return bias, {"mel_floor": mel_floor, "referral_weight": referral_weight,
                  "before": figures(np.zeros(len(CODES))), "after": figures(bias)}


def operating_point_figures(logits: torch.Tensor, labels: torch.Tensor, sources: list[str],
                            mel_floor: float) -> dict:
    """``val_figures`` at the operating point a release is served at: logit biases fitted on these
    images for melanoma sensitivity at or above ``mel_floor``. The shipped release (whose own biases
    are folded in already, so they barely move) and a teacher are compared with a new student at
    this same point; a model's raw argmax would trade melanomas for BMA differently."""
    bias, _ = choose_logit_bias(logits, labels, mel_floor)
    biased = logits + torch.tensor(bias, dtype=logits.dtype)
    return served_figures(biased, labels, sources, *calibration(biased, labels))


def beats(figures: dict, reference: dict | None, margin: float = 0.0) -> bool:
    """Whether a model's validation figures at the operating point (``operating_point_figures``)
    are better than ``reference``'s, taken at the same point: BMA by more than ``margin``, at
    least as many of HAM10000's melanomas found, and a referral flag at least as specific at the
    same sensitivity. No reference (nothing shipped yet) is always beaten."""
    if reference is None:
        return True
    mel = figures["mel_sensitivity_by_source"].get(HAM_SOURCE)
    # Both sides' biases hold melanoma sensitivity near MEL_FLOOR, which pins HAM10000's near it
    # too: "strictly more" would turn on a single melanoma of its validation split, not on the model.
    return (figures["balanced_accuracy"] > reference["balanced_accuracy"] + margin
            and (mel is None or mel >= (reference["mel_sensitivity_by_source"].get(HAM_SOURCE) or 0))
            and figures["referral_specificity"] >= reference["referral_specificity"])


def served_figures(logits: torch.Tensor, labels: torch.Tensor, sources: list[str], temperature: float,
                   threshold: float) -> dict:
    """``val_figures`` of logits as served (logit biases included), with the specificity of the
    referral flag at the temperature and threshold chosen on them (``calibration``): the flag is
    what the page asks a user to act on, so a release that buys BMA with more false alarms is not
    better."""
    flag = referral_report(labels.numpy(), torch.softmax(logits / temperature, dim=1).numpy(), threshold)
    return val_figures(logits, labels, sources) | {"referral_specificity": flag["specificity"]}


def tta_decision(model: torch.nn.Module, batches: Iterable, precision: Precision, colour_constancy: bool,
                 bias: np.ndarray) -> dict:
    """Validation BMA with and without averaging the eight dihedral views' logits, and whether the
    gain pays for the eight-fold cost."""
    shift = torch.tensor(bias, dtype=torch.float32)
    plain, labels = predict(model, batches, precision, colour_constancy)
    averaged, _ = predict(model, batches, precision, colour_constancy, dihedral=True)
    without = balanced_accuracy(labels.numpy(), (plain + shift).argmax(1).numpy())
    with_tta = balanced_accuracy(labels.numpy(), (averaged + shift).argmax(1).numpy())
    return {"without": without, "with": with_tta, "min_gain": TTA_MIN_GAIN,
            "ships": with_tta - without >= TTA_MIN_GAIN}


def calibration(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The temperature, and the referral threshold on the probabilities at that temperature."""
    temperature = choose_temperature(logits, labels)
    return temperature, choose_threshold(labels.numpy(), torch.softmax(logits / temperature, dim=1).numpy())
