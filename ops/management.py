"""A thin client for TorchServe's management API (port 8081), authorised with the management key.

Every failure becomes an :class:`OpsError` whose message names the cause and what to check, so the
CLI, the load test and the soak run can print it as one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psutil

import settings
from api.client import FAST_CALL_S, ManagementClient
from api.keys import KeySource
from api.problems import Problem, ServerProblem, json_field, key_refused
from ops.errors import OpsError

# Registering or scaling synchronously waits for workers to load a ResNet34: give it time.
SLOW_CALL_S = 300


@dataclass
class Management:
    url: str = settings.MANAGEMENT_URL
    key_file: Path = settings.KEY_FILE
    client: ManagementClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.client = ManagementClient(self.url, KeySource(self.key_file, "management"))

    def call(self, method: str, path: str, params: dict | None = None,
             timeout: float = FAST_CALL_S) -> dict | list:
        if not self.key_file.exists():
            raise OpsError(f"key file {self.key_file} not found: is TorchServe running, "
                           "and is --key-file its key_file.json?")
        try:
            response = self.client.call(method, path, params=params, timeout=timeout)
        except ServerProblem as failure:
            if failure.problem is Problem.TIMEOUT:
                raise OpsError(f"{method} {path} got no answer within {timeout:.0f}s from "
                               f"{self.url}") from None
            raise OpsError(f"cannot reach the management API at {self.url}: is TorchServe "
                           "running (make serve)?") from None
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text.strip()}
        if response.status_code >= 400:
            message = json_field(response, "message") if isinstance(body, dict) else response.reason
            # TorchServe answers a wrong key with 400, which reads like a bad request: say so.
            if key_refused(response):
                message = (f"the management key in {self.key_file} was refused "
                           f"(expired, or from another TorchServe): {message}")
            raise OpsError(f"{method} {path}: HTTP {response.status_code}: {message}")
        return body

    def models(self) -> list[dict]:
        """Registered model names and archive URLs."""
        return self.call("GET", "/models", params={"limit": 1000})["models"]

    def describe(self, name: str) -> list[dict]:
        """Every version of ``name``, each with its workers (plus local RSS), its job queue and the
        precision its handler serves at."""
        versions = self.call("GET", f"/models/{name}/all")
        for version in versions:
            for worker in version.get("workers", []):
                worker["rssMB"] = worker_rss_mb(worker.get("pid"))
            version["precision"] = self.precision(name, version["modelVersion"])
        return versions

    def precision(self, name: str, version: str) -> dict | None:
        """The handler's precision record (``?customized=true``); None when no worker can say."""
        try:
            described = self.call("GET", f"/models/{name}/{version}", params={"customized": "true"})
            custom = described[0]["customizedMetadata"]
        except (OpsError, KeyError, IndexError, TypeError, ValueError):
            return None
        return custom.get("precision_choice")

    def scale(self, name: str, min_workers: int, max_workers: int,
              version: str | None = None) -> str:
        """Set the worker range and wait until TorchServe has started or stopped workers."""
        path = f"/models/{name}" + (f"/{version}" if version else "")
        params = {"min_worker": min_workers, "max_worker": max_workers, "synchronous": "true"}
        return self.call("PUT", path, params=params, timeout=SLOW_CALL_S)["status"]

    def register(self, archive: str, batch_size: int, max_batch_delay: int, workers: int,
                 name: str | None = None) -> str:
        """Register ``archive`` (a file name inside the server's model store) and start workers."""
        params = {"url": archive, "batch_size": batch_size, "max_batch_delay": max_batch_delay,
                  "initial_workers": workers, "synchronous": "true"}
        if name:
            params["model_name"] = name
        return self.call("POST", "/models", params=params, timeout=SLOW_CALL_S)["status"]

    def set_default(self, name: str, version: str) -> str:
        return self.call("PUT", f"/models/{name}/{version}/set-default")["status"]

    def unregister(self, name: str, version: str | None = None) -> str:
        path = f"/models/{name}" + (f"/{version}" if version else "")
        return self.call("DELETE", path, timeout=SLOW_CALL_S)["status"]

    def worker_pids(self, name: str) -> list[int]:
        """Pids of the READY workers of every version of ``name``."""
        return [worker["pid"] for version in self.describe(name)
                for worker in version.get("workers", []) if worker.get("status") == "READY"]


def worker_rss_mb(pid: int | None) -> float | None:
    """Resident memory of a worker running on this machine; TorchServe's memoryUsage is often 0."""
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1) if pid else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
