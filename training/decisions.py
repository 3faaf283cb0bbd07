"""What a release decides on validation after training: per-class logit biases, whether
test-time augmentation pays, the temperature and the referral threshold. The test split never
enters here."""
from __future__ import annotations

from collections.abc import Callable, Iterable

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
# Coordinate ascent from several starts (``bias_starts``): the seeded random ones find points the
# other two miss; each ascent stops when a round changes nothing, which takes a few rounds.
RANDOM_STARTS = 8
ASCENT_ROUNDS = 20
# What one point of the referral flag's specificity is worth against one point of BMA when the
# biases are fitted; chosen on the validation logits of 3.0 and 3.1 (`make recalibrate` prints the
# figures of each weight it shows), where a larger weight bought the flag little more and cost BMA.
REFERRAL_WEIGHT = 0.5
# Eight dihedral views cost eight forward passes; they must buy at least this much validation BMA.
TTA_MIN_GAIN = 0.01


def mel_sensitivity(labels: np.ndarray, predictions: np.ndarray) -> float:
    melanomas = labels == MEL
    return float((predictions[melanomas] == MEL).mean()) if melanomas.any() else 1.0


def has_flag(labels: np.ndarray) -> bool:
    """Whether these images have a referral flag specificity: concerning lesions and others both."""
    return bool(CONCERNING[labels].any() and not CONCERNING[labels].all())


def flag_specificity(labels: np.ndarray, logits: np.ndarray) -> float:
    """The referral flag's specificity on these images (softmax before temperature scaling) at the
    threshold that gives it its target sensitivity on them."""
    probabilities = softmax(logits.astype(np.float32), axis=1)
    return specificity(labels, probabilities, choose_threshold(labels, probabilities))


def bias_objective(logits: np.ndarray, labels: np.ndarray, mel_floor: float = MEL_FLOOR,
                   referral_weight: float = REFERRAL_WEIGHT) -> Callable[[np.ndarray], float]:
    """What the logit biases maximise on these validation images: BMA plus ``referral_weight`` times
    the referral flag's specificity (at its target sensitivity, before temperature scaling), less
    ten times any shortfall of melanoma sensitivity below ``mel_floor``, so that where the floor
    cannot be reached the biases get as close to it as BMA allows."""
    # The flag sums the probabilities of the concerning classes, so the biases that push melanomas
    # up the ranking also push nevi over the flag's threshold; BMA alone cannot see that cost.
    weigh_flag = has_flag(labels) and referral_weight

    def objective(bias: np.ndarray) -> float:
        predictions = (logits + bias).argmax(axis=1)
        shortfall = max(0.0, mel_floor - mel_sensitivity(labels, predictions))
        flag = referral_weight * flag_specificity(labels, logits + bias) if weigh_flag else 0.0
        return balanced_accuracy(labels, predictions) - 10 * shortfall + flag

    return objective


def coordinate_ascent(objective: Callable[[np.ndarray], float], start: np.ndarray) -> np.ndarray:
    """The biases on ``BIAS_GRID`` reached from ``start`` by changing one class's bias at a time,
    each to its best value, until a whole round changes none (or ``ASCENT_ROUNDS`` pass)."""
    bias = start.copy()
    for _ in range(ASCENT_ROUNDS):
        before = bias.copy()
        for index in range(len(bias)):
            candidates = [np.where(np.arange(len(bias)) == index, value, bias) for value in BIAS_GRID]
            bias = max(candidates, key=objective)
        if np.array_equal(bias, before):
            break
    return bias


def bias_starts(logits: np.ndarray, labels: np.ndarray, mel_floor: float) -> list[np.ndarray]:
    """Where the ascent starts: no bias; the smallest melanoma bias alone that reaches the floor;
    and ``RANDOM_STARTS`` seeded points on the grid, so that the same logits get the same biases."""
    mel_only = np.zeros(len(CODES))
    for value in BIAS_GRID[BIAS_GRID >= 0]:
        mel_only[MEL] = value
        if mel_sensitivity(labels, (logits + mel_only).argmax(axis=1)) >= mel_floor:
            break
    generator = np.random.default_rng(0)
    random = [np.round(generator.uniform(-1.0, 1.0, len(CODES)), 1) for _ in range(RANDOM_STARTS)]
    return [np.zeros(len(CODES)), mel_only, *random]


def choose_logit_bias(logits: torch.Tensor, labels: torch.Tensor, mel_floor: float = MEL_FLOOR,
                      referral_weight: float = REFERRAL_WEIGHT) -> tuple[np.ndarray, dict]:
    """Per-class additive logit biases that maximise ``bias_objective`` on validation, with the
    figures before and after."""
    scores, y = logits.float().numpy(), labels.numpy()
    objective = bias_objective(scores, y, mel_floor, referral_weight)
    # The objective is a staircase: coordinate ascent stops at the first point that no single
    # class's bias can improve, and which point that is depends on where it starts (docs/training.md,
    # step 9, gives what one start cost the releases).
    bias = max((coordinate_ascent(objective, start) for start in bias_starts(scores, y, mel_floor)),
               key=objective)
    bias -= bias.mean()  # only differences between classes matter

    def figures(b: np.ndarray) -> dict:
        predictions = (scores + b).argmax(axis=1)
        return {"balanced_accuracy": balanced_accuracy(y, predictions),
                "mel_sensitivity": mel_sensitivity(y, predictions)} | (
            {"referral_specificity": flag_specificity(y, scores + b)} if has_flag(y) else {})

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
