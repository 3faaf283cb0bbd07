"""What SKIN's API promises: the shape of an answer, and what each failure means to a client.

The load test and the benchmark count an answer as a success only when ``check_prediction`` passes;
the page and ops turn a failed request into a :class:`ServerProblem` with ``problem_of``.
"""
from __future__ import annotations

from enum import Enum

import requests

from contract.classes import CODES
from contract.refusals import ACCEPTED, REASONS

PROBABILITY_TOLERANCE = 1e-4
# Worth another try: the worker died mid-batch (500), the queue is full (503), a worker restarts (507).
RETRIED_STATUSES = (500, 503, 507)


class Problem(Enum):
    NOT_RUNNING = "not_running"
    NOT_LOADED = "not_loaded"
    INVALID_IMAGE = "invalid_image"
    TOO_LARGE = "too_large"
    BUSY = "busy"
    KEY = "key"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    UNEXPECTED = "unexpected"


class ServerProblem(Exception):
    """A failed request. ``problem`` picks what a person reads; ``detail`` is for them only when the
    problem is INVALID_IMAGE (the handler's reason), and ``log`` is what an operator needs."""

    def __init__(self, problem: Problem, detail: str = "", log: str = "") -> None:
        super().__init__(f"{problem.value}: {log or detail}")
        self.problem = problem
        self.detail = detail
        self.log = log or detail


def key_refused(response: requests.Response) -> bool:
    # TorchServe 0.12 answers a wrong or missing key with 400 and this type, not with 401.
    return response.status_code == 401 or (
        response.status_code == 400 and json_field(response, "type") == "InvalidKeyException")


def json_field(response: requests.Response, name: str) -> str:
    """A field of a JSON error body, or the raw text when the body is not the handler's JSON."""
    try:
        return str(response.json()[name])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def problem_of(response: requests.Response, protocol: str = "v1") -> ServerProblem:
    """The failure a non-200 answer stands for."""
    status = response.status_code
    said = f"{response.request.method} {response.url}: HTTP {status}: {response.text[:300]}"
    if key_refused(response):
        return ServerProblem(Problem.KEY, log=said)
    if status == 400:
        # v1 errors explain themselves in "detail", v2 (Open Inference Protocol) ones in "error".
        return ServerProblem(Problem.INVALID_IMAGE,
                             json_field(response, "error" if protocol == "v2" else "detail"), log=said)
    if status == 404:
        return ServerProblem(Problem.NOT_LOADED, log=said)
    if status == 413:
        return ServerProblem(Problem.TOO_LARGE, log=said)
    if status in (503, 507):
        return ServerProblem(Problem.BUSY, log=said)
    if status >= 500:
        return ServerProblem(Problem.SERVER_ERROR, log=said)
    return ServerProblem(Problem.UNEXPECTED, log=said)


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
