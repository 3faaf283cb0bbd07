"""What every load-test and benchmark response must satisfy to count as a success."""
from __future__ import annotations

from handler.classes import CODES

PROBABILITY_TOLERANCE = 1e-4


def check_prediction(body: dict) -> None:
    """Raise ValueError unless ``body`` ranks all eight classes with probabilities summing to 1 and
    carries the release's referral threshold."""
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
