"""Whether a body is an answer SKIN promises (contract/answer.py builds them).

Every client reads answers through these checks: the load test and the benchmark count an answer as a
success only when it passes, and the page shows only what passed, so all of them agree on what a
good answer is. Each raises ValueError saying what is wrong.
"""
from __future__ import annotations

import math

from contract.classes import CODES
from contract.refusals import ACCEPTED, REASONS

PROBABILITY_TOLERANCE = 1e-4


def check_prediction(body: object) -> None:
    """Raise ValueError unless ``body`` names its model and version, ranks all eight classes with
    probabilities summing to 1, and carries the release's referral threshold and the gate's verdict."""
    if not isinstance(body, dict):
        raise ValueError(f"the answer is not a JSON object: {str(body)[:200]}")
    for key in ("model", "version"):
        if not isinstance(body.get(key), str):
            raise ValueError(f"no {key} in the answer: {str(body)[:200]}")
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or not all(isinstance(p, dict) for p in predictions):
        raise ValueError(f"no predictions list in the answer: {str(body)[:200]}")
    codes = [prediction.get("code") for prediction in predictions]
    if not all(isinstance(code, str) for code in codes) or sorted(codes) != sorted(CODES):
        raise ValueError(f"the answer's classes differ from classes.json: expected {sorted(CODES)}, "
                         f"got {codes}")
    probabilities = [prediction.get("probability") for prediction in predictions]
    if not all(_is_number(p) for p in probabilities):
        raise ValueError(f"the answer has probabilities that are not numbers: {probabilities}")
    if abs(sum(probabilities) - 1) > PROBABILITY_TOLERANCE:
        raise ValueError(f"probabilities sum to {sum(probabilities):.6f}, not 1")
    if probabilities != sorted(probabilities, reverse=True):
        raise ValueError("predictions are not ranked by probability")
    referral = body.get("referral")
    threshold = referral.get("threshold") if isinstance(referral, dict) else None
    if not (_is_number(threshold) and 0 <= threshold <= 1):
        raise ValueError(f"no referral threshold in [0, 1] in the answer: {referral}")
    check_gate(body.get("gate"))


def check_gate(gate: object) -> None:
    """Raise ValueError unless ``gate`` is a verdict: accepted exactly when the reason says so, a
    documented reason, a sentence for the user, and a score (None only when the gate failed)."""
    if not isinstance(gate, dict) or not isinstance(gate.get("accepted"), bool):
        raise ValueError(f"no gate verdict with a boolean 'accepted' in the answer: {gate}")
    if gate.get("reason") not in REASONS:
        raise ValueError(f"unknown gate reason {gate.get('reason')!r}; reasons are {list(REASONS)}")
    if gate["accepted"] != (gate["reason"] == ACCEPTED):
        raise ValueError(f"inconsistent gate verdict: reason {gate['reason']!r} with "
                         f"accepted={gate['accepted']}")
    if not isinstance(gate.get("detail"), str) or not gate["detail"]:
        raise ValueError(f"the gate verdict has no detail for the user: {gate}")
    if gate["reason"] != "gate_error" and not _is_number(gate.get("score")):
        raise ValueError(f"the gate verdict has no numeric score: {gate}")


def check_explanation(body: object) -> None:
    """Raise ValueError unless ``body`` names a class of classes.json with its probability, the
    model's frame, and a heatmap over it: a rectangular grid of values on [0, 1]."""
    lesion = body.get("class") if isinstance(body, dict) else None
    if not isinstance(lesion, dict) or lesion.get("code") not in CODES:
        raise ValueError(f"no class of classes.json in the explanation: {str(body)[:200]}")
    if not _is_number(lesion.get("probability")):
        raise ValueError(f"the explained class has no numeric probability: {lesion}")
    frame = body.get("frame")
    if not isinstance(frame, dict) or not all(type(frame.get(side)) is int and frame[side] > 0
                                              for side in ("height", "width")):
        raise ValueError(f"no frame with a height and a width in pixels in the explanation: {frame}")
    heatmap = body.get("heatmap")
    if (not isinstance(heatmap, list) or not heatmap or not all(isinstance(row, list) for row in heatmap)
            or not heatmap[0] or len({len(row) for row in heatmap}) != 1):
        raise ValueError("the heatmap is not a rectangular grid")
    if not all(_is_number(value) and 0 <= value <= 1 for row in heatmap for value in row):
        raise ValueError("the heatmap has values outside [0, 1], or that are no numbers")


def _is_number(value: object) -> bool:
    """A finite JSON number; JSON's true and false are no numbers, though Python's bool is an int."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
