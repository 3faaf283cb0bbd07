"""TorchServe's management API with the management key: the one client that ops, the launcher, the
v2 front, the load test's soak and the bench use for models, workers and registration.

``call`` returns TorchServe's raw answer; every other method returns its JSON and turns a failure
into a :class:`~api.problems.ServerProblem` whose ``log`` names the cause and what to check, one line
that ops prints as it is.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

import settings
from api.client import FAST_CALL_S, POLL_PAUSE_S, Endpoint
from api.keys import KeySource
from api.problems import Problem, ServerProblem, json_field, key_refused, problem_of

# Registering or scaling synchronously waits for workers to load a ResNet34: give it time.
SLOW_CALL_S = 300


@dataclass
class ManagementClient:
    """TorchServe's management API (models, workers, registration) with the management key."""

    url: str = settings.MANAGEMENT_URL
    keys: KeySource = field(default_factory=lambda: KeySource(api="management"))

    def __post_init__(self) -> None:
        self.endpoint = Endpoint(self.keys)

    def call(self, method: str, path: str, params: dict | None = None,
             timeout: float = FAST_CALL_S) -> requests.Response:
        """The raw answer, whatever its status; raises ServerProblem only when none came."""
        return self.endpoint.send(method, f"{self.url}{path}", params=params, timeout=timeout)

    def model_status(self, model: str) -> str | None:
        """READY when a worker of ``model`` is, LOADING before; None while nothing answers."""
        try:
            response = self.call("GET", f"/models/{model}", timeout=5)
            workers = response.json()[0].get("workers", []) if response.status_code == 200 else None
        except (ServerProblem, ValueError, KeyError, IndexError, AttributeError):
            return None
        if workers is None:
            return None
        return "READY" if any(worker.get("status") == "READY" for worker in workers) else "LOADING"

    def request(self, method: str, path: str, params: dict | None = None,
                timeout: float = FAST_CALL_S) -> dict | list:
        """The JSON answer; raises ServerProblem with a sentence an operator can act on."""
        key_file = self.keys.key_file
        if key_file is not None and not key_file.exists():
            raise ServerProblem(Problem.KEY, log=f"key file {key_file} not found: is TorchServe running, "
                                "and is --key-file its key_file.json?")
        try:
            response = self.call(method, path, params=params, timeout=timeout)
        except ServerProblem as failure:
            if failure.problem is Problem.TIMEOUT:
                raise ServerProblem(Problem.TIMEOUT, log=f"{method} {path} got no answer within "
                                    f"{timeout:.0f}s from {self.url}") from None
            raise ServerProblem(failure.problem, log=f"cannot reach the management API at {self.url}: "
                                "is TorchServe running (make serve)?") from None
        if response.status_code >= 400:
            raise ServerProblem(problem_of(response).problem, log=refusal(response, method, path, key_file))
        try:
            return response.json()
        except ValueError:
            return {"message": response.text.strip()}

    def wait_ready(self, model: str, timeout: float, alive: Callable[[], None] = lambda: None) -> float:
        """Block until ``model`` has a READY worker; ``alive`` raises when the server has died.
        Returns the seconds waited; raises TimeoutError."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            alive()
            if self.model_status(model) == "READY":
                return time.monotonic() - started
            time.sleep(POLL_PAUSE_S)
        raise TimeoutError(f"{model} not READY after {timeout:.0f}s")

    def models(self) -> list[dict]:
        """Registered model names and archive URLs."""
        return self.request("GET", "/models", params={"limit": 1000})["models"]

    def describe(self, name: str) -> list[dict]:
        """Every version of ``name``, each with its workers (plus local RSS), its job queue, the
        precision its handler serves at and how a worker uses its threads."""
        versions = self.request("GET", f"/models/{name}/all")
        for version in versions:
            for worker in version.get("workers", []):
                worker["rssMB"] = worker_rss_mb(worker.get("pid"))
            custom = self.customized(name, version["modelVersion"])
            version["precision"] = custom.get("precision_choice")
            # An older release's handler describes less: no gate, or no thread layout.
            gate = custom.get("gate", {})
            version["threads"] = ({"torch_threads": custom["torch_threads"],
                                   "gate_beside": gate.get("network_beside_task_network", False)}
                                  if "torch_threads" in custom else None)
        return versions

    def customized(self, name: str, version: str) -> dict:
        """The handler's own description (``?customized=true``); empty when no worker can say."""
        try:
            described = self.request("GET", f"/models/{name}/{version}", params={"customized": "true"})
            custom = described[0]["customizedMetadata"]
        except (ServerProblem, KeyError, IndexError, TypeError, ValueError):
            return {}
        return custom if isinstance(custom, dict) else {}

    def scale(self, name: str, min_workers: int, max_workers: int,
              version: str | None = None) -> str:
        """Set the worker range and wait until TorchServe has started or stopped workers."""
        path = f"/models/{name}" + (f"/{version}" if version else "")
        params = {"min_worker": min_workers, "max_worker": max_workers, "synchronous": "true"}
        return self.request("PUT", path, params=params, timeout=SLOW_CALL_S)["status"]

    def register(self, archive: str, batch_size: int, max_batch_delay: int, workers: int,
                 name: str | None = None) -> str:
        """Register ``archive`` (a file name inside the server's model store) and start workers."""
        params = {"url": archive, "batch_size": batch_size, "max_batch_delay": max_batch_delay,
                  "initial_workers": workers, "synchronous": "true"}
        if name:
            params["model_name"] = name
        return self.request("POST", "/models", params=params, timeout=SLOW_CALL_S)["status"]

    def set_default(self, name: str, version: str) -> str:
        return self.request("PUT", f"/models/{name}/{version}/set-default")["status"]

    def unregister(self, name: str, version: str | None = None) -> str:
        path = f"/models/{name}" + (f"/{version}" if version else "")
        return self.request("DELETE", path, timeout=SLOW_CALL_S)["status"]

    def worker_pids(self, name: str) -> list[int]:
        """Pids of the READY workers of every version of ``name``."""
        return [worker["pid"] for version in self.describe(name)
                for worker in version.get("workers", []) if worker.get("status") == "READY"]

def refusal(response: requests.Response, method: str, path: str, key_file: Path | None) -> str:
    """What an error answer means to an operator."""
    message = json_field(response, "message")
    # TorchServe answers a wrong key with 400, which reads like a bad request: say so.
    if key_refused(response):
        message = f"the management key in {key_file} was refused (expired, or from another TorchServe): {message}"
    return f"{method} {path}: HTTP {response.status_code}: {message}"


def worker_rss_mb(pid: int | None) -> float | None:
    """Resident memory of a worker running on this machine; TorchServe's memoryUsage is often 0."""
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1) if pid else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
