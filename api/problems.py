"""What each failure of a request to SKIN's API means to a client.

The page and ops turn a failed request into a :class:`ServerProblem` with ``problem_of``; what a good
answer is, the contract package says (contract/checks.py).
"""
from __future__ import annotations

from enum import Enum

import requests

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

