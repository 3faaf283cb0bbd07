"""SKIN's answers as they travel: the one place that builds their bodies.

``POST /predictions/skin`` answers with every class, most probable first, the referral flag and the
gate's verdict; ``POST /explanations/skin`` with one class and its heatmap over the model's frame; a
request the handler cannot serve, with HTTP 400 and :func:`error`. The handler calls these builders,
the v2 codec rebuilds a v1 answer with them, and contract/checks.py reads every answer back.
"""
from __future__ import annotations

from collections.abc import Sequence

from contract.classes import CLASSES, LesionClass

# Error codes of a 400 answer: the body was no image, or an explanation asked for no known class.
INVALID_IMAGE = "invalid_image"
UNKNOWN_CLASS = "unknown_class"
# Three decimals keep a 12 x 16 map near 1 KB of JSON and are far finer than a screen shows.
HEATMAP_DECIMALS = 3


def lesion(lesion_class: LesionClass) -> dict:
    """How every answer names a class."""
    return {"code": lesion_class.code, "name": lesion_class.name, "name_zh": lesion_class.name_zh,
            "risk": lesion_class.risk}


def scored(lesion_class: LesionClass, probability: float) -> dict:
    """A class and its probability, as the ranking lists it."""
    return lesion(lesion_class) | {"probability": probability}


def ranked(probabilities: Sequence[float]) -> list[dict]:
    """Every class, most probable first; ``probabilities`` are in classes.json's order."""
    order = sorted(range(len(CLASSES)), key=lambda i: probabilities[i], reverse=True)
    return [scored(CLASSES[i], probabilities[i]) for i in order]


def referral(probabilities: Sequence[float], threshold: float) -> dict:
    """Whether to see a doctor: the concerning classes together against the release's threshold."""
    concern = sum(p for p, c in zip(probabilities, CLASSES) if c.is_concerning)
    return {"refer": concern >= threshold, "score": concern, "threshold": threshold}


def gate_verdict(accepted: bool, reason: str, detail: str, score: float | None,
                 threshold: float | None) -> dict:
    """The gate's verdict: a reason of contract.refusals, the user's sentence, and the measurement
    that decided it (None when none could be made)."""
    return {"accepted": accepted, "reason": reason, "detail": detail, "score": score,
            "threshold": threshold}


def prediction(model: str, version: str, probabilities: Sequence[float], referral_threshold: float,
               gate: dict) -> dict:
    """The answer to one image: ``probabilities`` in classes.json's order, ``gate`` from
    :func:`gate_verdict`."""
    return {"model": model, "version": version,
            "referral": referral(probabilities, referral_threshold),
            "predictions": ranked(probabilities), "gate": gate}


def explanation(model: str, version: str, frame: tuple[int, int], heatmap: Sequence[Sequence[float]],
                class_index: int, probability: float, requested: bool) -> dict:
    """The explanation of one class: ``heatmap`` rows over the model's ``frame`` (height, width),
    top first, on [0, 1]; ``requested`` is False when the class is the top one by default."""
    return {
        "model": model,
        "version": version,
        "class": scored(CLASSES[class_index], probability) | {"requested": requested},
        "frame": {"height": frame[0], "width": frame[1]},
        "heatmap": [[round(value, HEATMAP_DECIMALS) for value in row] for row in heatmap],
    }


def error(code: str, detail: str) -> dict:
    """The body of a 400 answer: ``code`` for programs (INVALID_IMAGE, UNKNOWN_CLASS), ``detail``
    for the person who sent the request."""
    return {"error": code, "detail": detail}
