"""What every load-test and benchmark response must satisfy to count as a success."""
from __future__ import annotations

from handler.classes import CODES
from handler.refusals import ACCEPTED, REASONS

PROBABILITY_TOLERANCE = 1e-4


def check_prediction(body: dict) -> None:
    """Raise ValueError unless ``body`` ranks all eight classes with probabilities summing to 1 and
    carries the release's referral threshold and the gate's verdict."""
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list):
        raise ValueError(f"no predictions list in the response: {str(body)[:200]}")
    codes = sorted(prediction.get("code") for prediction in predictions)
    if codes != sorted(CODES):
        raise ValueError(f"expected the classes {sorted(CODES)}, got {codes}")
    probabilities = [prediction["probability"] for prediction in predictions]
    if abs(sum(probabilities) - 1) > PROBABILITY_TOLERANCE:
        raise ValueError(f"probabilities sum to {sum(probabilities):.6f}, not 1")
    if probabilities != sorted(probabilities, reverse=True):
        raise ValueError("predictions are not ranked by probability")
    referral = body.get("referral")
    if not isinstance(referral, dict) or not 0 <= referral.get("threshold", -1) <= 1:
        raise ValueError(f"no referral threshold in [0, 1] in the response: {referral}")
    check_gate(body.get("gate"))


def check_gate(gate: object) -> None:
    """Raise ValueError unless ``gate`` is a verdict: accepted exactly when the reason says so, a
    documented reason, a sentence for the user, and a score (None only when the gate failed)."""
    if not isinstance(gate, dict) or not isinstance(gate.get("accepted"), bool):
        raise ValueError(f"no gate verdict with a boolean 'accepted' in the response: {gate}")
    if gate.get("reason") not in REASONS or gate["accepted"] != (gate["reason"] == ACCEPTED):
        raise ValueError(f"gate reason {gate.get('reason')!r} does not fit accepted={gate['accepted']}; "
                         f"reasons are {list(REASONS)}")
    if not isinstance(gate.get("detail"), str) or not gate["detail"]:
        raise ValueError(f"the gate verdict has no detail for the user: {gate}")
    if gate["reason"] != "gate_error" and not isinstance(gate.get("score"), (int, float)):
        raise ValueError(f"the gate verdict has no numeric score: {gate}")
