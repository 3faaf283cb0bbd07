"""The page's side of the API: its settings, and the server's answers as rankings and heatmaps.

Configuration comes from the environment so the same page serves `make serve`, tests and a remote
deployment: SKIN_INFERENCE_URL, SKIN_KEY_FILE (a key file holding the inference key), SKIN_TOKEN (a
key that overrides the file) and SKIN_PROTOCOL (v1, or v2 for a server with the kservev2 envelope).
Keys, retries and errors are api.client's; what went wrong is logged in full, while the page shows
only a sentence a person can act on.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import settings
from api.client import InferenceClient, inference_path, protocol_from_env
from api.keys import KeySource
from api.problems import Problem, ServerProblem
from frontend.explanation import Explanation
from frontend.ranking import Ranking

LOG = logging.getLogger(__name__)
__all__ = ["ClientConfig", "Problem", "ServerProblem", "SkinClient"]


@dataclass(frozen=True)
class ClientConfig:
    url: str = settings.INFERENCE_URL + inference_path("v1")
    key_file: Path = settings.PAGE_KEY_FILE
    token: str | None = None
    protocol: str = "v1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ClientConfig:
        protocol = protocol_from_env(environ)
        url = environ.get("SKIN_INFERENCE_URL") or settings.INFERENCE_URL + inference_path(protocol)
        return cls(url=url, key_file=Path(environ.get("SKIN_KEY_FILE") or settings.PAGE_KEY_FILE),
                   token=environ.get("SKIN_TOKEN") or None, protocol=protocol)

    def api(self) -> InferenceClient:
        return InferenceClient(self.url, KeySource(self.key_file, "inference", self.token),
                               self.protocol)


@dataclass
class SkinClient:
    """One per configuration, shared by all page sessions (its session pools connections)."""

    config: ClientConfig
    api: InferenceClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = self.config.api()

    def classify(self, image: bytes) -> Ranking:
        """Rank the eight classes for one image; raises ServerProblem."""
        answer = self._logged(self.api.predict, image)
        try:
            return Ranking.from_response(answer)
        except ValueError as exc:
            raise self._log(ServerProblem(Problem.UNEXPECTED, log=f"unreadable answer: {exc}")) from None

    def explain(self, image: bytes) -> Explanation:
        """The heatmap of what the model looked at for its top class; raises ServerProblem."""
        answer = self._logged(self.api.explain, image)
        try:
            return Explanation.from_response(answer)
        except ValueError as exc:
            raise self._log(ServerProblem(Problem.UNEXPECTED, log=f"unreadable explanation: {exc}")) from None

    def _logged(self, ask: Callable[[bytes], dict], image: bytes) -> dict:
        try:
            return ask(image)
        except ServerProblem as problem:
            raise self._log(problem) from None

    def _log(self, problem: ServerProblem) -> ServerProblem:
        if problem.problem is Problem.KEY:
            LOG.warning("key refused: %s (%s)", self.api.keys.describe(), problem.log)
        elif problem.problem is not Problem.INVALID_IMAGE:
            LOG.warning("%s: %s", problem.problem.value, problem.log)
        return problem
