"""The TorchServe client: where the server is, which key to send, retries, and what went wrong.

Configuration comes from the environment so the same page serves `make serve`, tests and a remote
deployment: SKIN_INFERENCE_URL, SKIN_KEY_FILE (TorchServe's key_file.json), SKIN_TOKEN (a key
that overrides the file) and SKIN_PROTOCOL (v1, or v2 for a server with the kservev2 envelope).
Explanations go to the same server's /explanations/ for the same model (v1 only).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TypeVar

import requests

from frontend.explanation import Explanation
from frontend.ranking import Ranking
from handler import v2
from tools.torchserve import DEFAULT_KEY_FILE, inference_path, protocol_from_env, read_key

DEFAULT_ADDRESS = "http://127.0.0.1:8080"
DEFAULT_URL = DEFAULT_ADDRESS + inference_path("v1")
CONNECT_TIMEOUT_S = 3.0
# Above TorchServe's default_response_timeout (60 s), so the server reports its own timeouts.
READ_TIMEOUT_S = 75.0
RETRY_PAUSE_S = 1.0
# Worth one more try: the server restarts a worker (507) or its queue is full (503).
_TRANSIENT_STATUSES = {503, 507}
Answer = TypeVar("Answer")


class Problem(Enum):
    NOT_RUNNING = "not_running"
    NOT_LOADED = "not_loaded"
    INVALID_IMAGE = "invalid_image"
    TOO_LARGE = "too_large"
    BUSY = "busy"
    KEY = "key"
    TIMEOUT = "timeout"
    UNEXPECTED = "unexpected"


class ServerProblem(Exception):
    """A failed classification; ``problem`` picks the user's message, ``detail`` fills it in."""

    def __init__(self, problem: Problem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}")
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True)
class ClientConfig:
    url: str = DEFAULT_URL
    key_file: Path = DEFAULT_KEY_FILE
    token: str | None = None
    protocol: str = "v1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ClientConfig":
        protocol = protocol_from_env(environ)
        url = environ.get("SKIN_INFERENCE_URL") or DEFAULT_ADDRESS + inference_path(protocol)
        return cls(url=url, key_file=Path(environ.get("SKIN_KEY_FILE") or DEFAULT_KEY_FILE),
                   token=environ.get("SKIN_TOKEN") or None, protocol=protocol)

    @property
    def explanations_url(self) -> str:
        """TorchServe serves a model's explanations beside its predictions."""
        return self.url.replace("/predictions/", "/explanations/", 1)


@dataclass
class SkinClient:
    """One per configuration, shared by all page sessions (requests.Session pools connections)."""

    config: ClientConfig
    session: requests.Session = field(default_factory=requests.Session)
    _key: str | None = None

    def classify(self, image: bytes) -> Ranking:
        """Rank the eight classes for one image; raises ServerProblem."""
        return self._answer(self._ask(self.config.url, image), lambda body: Ranking.from_response(
            v2.answer_from_response(body) if self.config.protocol == "v2" else body))

    def explain(self, image: bytes) -> Explanation:
        """The heatmap of what the model looked at for its top class; raises ServerProblem."""
        if self.config.protocol == "v2":
            # A v2 server answers v1 requests with 400, and the page reads explanations in v1 only.
            raise ServerProblem(Problem.UNEXPECTED, "explanations need SKIN_PROTOCOL=v1")
        return self._answer(self._ask(self.config.explanations_url, image), Explanation.from_response)

    def _ask(self, url: str, image: bytes) -> requests.Response:
        if self._key is None:
            self._key = self._read_key()
        response = self._post(url, image)
        if _key_rejected(response):
            # TorchServe rotates keys (POST /token) and rewrites key_file.json: read it again.
            fresh = self._read_key()
            if fresh is None or fresh == self._key:
                raise ServerProblem(Problem.KEY, self._key_source())
            self._key = fresh
            response = self._post(url, image)
        return response

    def _read_key(self) -> str | None:
        if self.config.token:
            return self.config.token
        try:
            return read_key(self.config.key_file, "inference")
        except (OSError, ValueError, KeyError, TypeError):
            # No usable key file: ask anyway, so a stopped server reads as "not running".
            return None

    def _key_source(self) -> str:
        return "SKIN_TOKEN" if self.config.token else str(self.config.key_file)

    def _post(self, url: str, image: bytes) -> requests.Response:
        """POST, and once more after a pause when the server is unreachable or busy."""
        try:
            response = self._send(url, image)
            if response.status_code not in _TRANSIENT_STATUSES:
                return response
        except ServerProblem as failure:
            if failure.problem is not Problem.NOT_RUNNING:
                raise
        time.sleep(RETRY_PAUSE_S)
        return self._send(url, image)

    def _send(self, url: str, image: bytes) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        body = {"json": v2.request(image)} if self.config.protocol == "v2" else {"data": image}
        try:
            return self.session.post(url, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                                     **body)
        except requests.ReadTimeout:
            raise ServerProblem(Problem.TIMEOUT, url) from None
        except requests.ConnectionError:
            raise ServerProblem(Problem.NOT_RUNNING, url) from None

    def _answer(self, response: requests.Response, parse: Callable[[dict], Answer]) -> Answer:
        status = response.status_code
        if status == 200:
            try:
                return parse(response.json())
            except ValueError as exc:
                raise ServerProblem(Problem.UNEXPECTED, str(exc)) from None
        if _key_rejected(response):
            raise ServerProblem(Problem.KEY, self._key_source())
        if status == 400:
            # v1 errors explain themselves in "detail", v2 (Open Inference Protocol) ones in "error".
            detail = "error" if self.config.protocol == "v2" else "detail"
            raise ServerProblem(Problem.INVALID_IMAGE, _json_field(response, detail))
        if status == 404:
            raise ServerProblem(Problem.NOT_LOADED, response.url)
        if status == 413:
            raise ServerProblem(Problem.TOO_LARGE)
        if status in _TRANSIENT_STATUSES:
            raise ServerProblem(Problem.BUSY)
        raise ServerProblem(Problem.UNEXPECTED, f"HTTP {status}: {response.text[:200]}")


def _key_rejected(response: requests.Response) -> bool:
    # TorchServe 0.12 answers a wrong or missing key with 400 and this type, not with 401.
    return response.status_code == 401 or (
        response.status_code == 400 and _json_field(response, "type") == "InvalidKeyException")


def _json_field(response: requests.Response, name: str) -> str:
    """A field of a JSON error body, or the raw text when the body is not the handler's JSON."""
    try:
        return str(response.json()[name])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
