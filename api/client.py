"""The one HTTP client for TorchServe's inference, management and metrics APIs.

Every request carries its API's key from a :class:`~api.keys.KeySource`; a refused key is re-read
once (TorchServe rotates keys), and retries go through urllib3's Retry: inference requests once more
after a pause when the server cannot be reached or answers 500 (a worker died mid-batch), 503 or 507.
Failures become :class:`~api.problems.ServerProblem`, never a requests exception.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import settings
from api.keys import KeySource
from api.problems import RETRIED_STATUSES, Problem, ServerProblem, key_refused, problem_of
from contract import v2

PROTOCOLS = ("v1", "v2")
CONNECT_TIMEOUT_S = 3.0
# Above TorchServe's default_response_timeout (60 s), so the server reports its own timeouts.
READ_TIMEOUT_S = 75.0
FAST_CALL_S = 10.0
RETRY_PAUSE_S = 1.0
POLL_PAUSE_S = 0.5


class PausedRetry(Retry):
    """urllib3's Retry with a pause before every retry (urllib3 sends the first one at once): a
    replacement worker needs a moment to come up."""

    def get_backoff_time(self) -> float:
        return max(RETRY_PAUSE_S, super().get_backoff_time())


# Classifying a photo changes nothing on the server, so a POST may be sent twice.
INFERENCE_RETRY = PausedRetry(total=2, connect=1, read=0, status=1, other=0, allowed_methods=None,
                              status_forcelist=RETRIED_STATUSES, raise_on_status=False)


def inference_path(protocol: str, model: str = "skin") -> str:
    """Where a client posts an image in ``protocol``."""
    return f"/v2/models/{model}/infer" if protocol == "v2" else f"/predictions/{model}"


def protocol_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """SKIN_PROTOCOL (v1 when unset), as `SKIN_PROTOCOL=v2 make serve` sets it."""
    protocol = environ.get("SKIN_PROTOCOL") or "v1"
    if protocol not in PROTOCOLS:
        raise ValueError(f"SKIN_PROTOCOL={protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    return protocol


def session_with(retry: Retry | None) -> requests.Session:
    session = requests.Session()
    if retry is not None:
        for scheme in ("http://", "https://"):
            session.mount(scheme, HTTPAdapter(max_retries=retry))
    return session


@dataclass
class Endpoint:
    """Requests to one TorchServe API, authorised by ``keys``."""

    keys: KeySource = field(default_factory=KeySource)
    session: requests.Session = field(default_factory=lambda: session_with(None))

    def send(self, method: str, url: str, timeout: float | tuple[float, float] = FAST_CALL_S,
             **kwargs) -> requests.Response:
        """One request; when the key is refused and the key source has a new one, once more."""
        response = self._send(method, url, timeout, kwargs)
        if key_refused(response) and self.keys.refresh():
            response = self._send(method, url, timeout, kwargs)
        return response

    def _send(self, method: str, url: str, timeout: float | tuple[float, float],
              kwargs: dict) -> requests.Response:
        # Built afresh for every try: a retry after a refusal carries the re-read key.
        headers = {**kwargs.get("headers", {}), **self.keys.headers()}
        try:
            return self.session.request(method, url, timeout=timeout,
                                        **{**kwargs, "headers": headers})
        except requests.Timeout as exc:
            if isinstance(exc, requests.ConnectionError):  # a connect timeout: nothing listens
                raise ServerProblem(Problem.NOT_RUNNING, log=f"{method} {url}: {exc}") from None
            raise ServerProblem(Problem.TIMEOUT, log=f"{method} {url}: no answer within "
                                f"{timeout}s") from None
        except requests.RequestException as exc:
            raise ServerProblem(Problem.NOT_RUNNING, log=f"{method} {url}: {exc}") from None


@dataclass
class InferenceClient:
    """Predictions and explanations for one model, in v1 or v2; answers come back as v1 dicts."""

    url: str = settings.INFERENCE_URL + inference_path("v1")
    keys: KeySource = field(default_factory=KeySource)
    protocol: str = "v1"

    def __post_init__(self) -> None:
        self.endpoint = Endpoint(self.keys, session_with(INFERENCE_RETRY))

    @property
    def explanations_url(self) -> str:
        """TorchServe serves a model's explanations beside its predictions."""
        return self.url.replace("/predictions/", "/explanations/", 1)

    def predict(self, image: bytes) -> dict:
        """The v1 answer for one image; raises ServerProblem."""
        body = self._post(self.url, image)
        return v2.answer_from_response(body) if self.protocol == "v2" else body

    def explain(self, image: bytes) -> dict:
        """The Grad-CAM explanation of the top class (v1 only); raises ServerProblem."""
        if self.protocol == "v2":
            # A v2 server answers v1 requests with 400, and explanations are read in v1 only.
            raise ServerProblem(Problem.UNEXPECTED, log="explanations need SKIN_PROTOCOL=v1")
        return self._post(self.explanations_url, image)

    def _post(self, url: str, image: bytes) -> dict:
        body = {"json": v2.request(image)} if self.protocol == "v2" else {"data": image}
        response = self.endpoint.send("POST", url, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                                      **body)
        if response.status_code != 200:
            raise problem_of(response, self.protocol)
        try:
            return response.json()
        except ValueError:
            raise ServerProblem(Problem.UNEXPECTED,
                                log=f"POST {url}: not JSON: {response.text[:200]}") from None


def metrics_text(url: str = settings.METRICS_URL, timeout: float = FAST_CALL_S) -> str:
    """TorchServe's Prometheus text (the metrics API takes no key); raises ServerProblem."""
    response = Endpoint().send("GET", f"{url}/metrics", timeout=timeout)
    if response.status_code != 200:
        raise problem_of(response)
    return response.text
