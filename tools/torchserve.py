"""Start, wait for and stop one TorchServe instance with its own ports and scratch folder.

`make serve` (frontend/serve_all.py) and ``python -m tools.torchserve`` (TorchServe alone, as
bench/gpu_run.sh runs it) use the repository's config.properties, ports 8080-8082 and scratch in
.run/serve. Tests and benchmarks use :class:`TorchServe` with free ports and a
temporary home, so they can run beside a live `make serve`: TorchServe keeps its pid file, socket
and unpacked models in TMPDIR/TEMP and writes key_file.json into its working directory, and all
three point into the instance's home here.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO / "config.properties"
DEFAULT_HOME = REPO / ".run" / "serve"
KEY_FILE_NAME = "key_file.json"
DEFAULT_KEY_FILE = DEFAULT_HOME / KEY_FILE_NAME  # where `make serve`'s clients find the keys
ADDRESS_KEYS = {"inference": "inference_address", "management": "management_address",
                "metrics": "metrics_address"}
# TorchServe always opens its gRPC ports too, so a second instance needs its own.
GRPC_PORT_KEYS = {"grpc_inference": "grpc_inference_port", "grpc_management": "grpc_management_port"}
# The one archive speaks either protocol; only these configuration keys differ. v2 is the Open
# Inference Protocol (KServe v2), translated by handler/kservev2_envelope.py.
PROTOCOL_OVERRIDES = {"v1": {}, "v2": {"service_envelope": "kservev2"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_key(key_file: Path, api: str = "inference") -> str:
    """The bearer key for ``api`` ("inference" or "management") from TorchServe's key_file.json."""
    try:
        keys = json.loads(Path(key_file).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{key_file} not found: is TorchServe running from that folder?") from None
    return keys[api]["key"]


def inference_path(protocol: str, model: str = "skin") -> str:
    """Where a client posts an image in ``protocol``."""
    return f"/v2/models/{model}/infer" if protocol == "v2" else f"/predictions/{model}"


def protocol_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """SKIN_PROTOCOL (v1 when unset), as `SKIN_PROTOCOL=v2 make serve` sets it."""
    protocol = environ.get("SKIN_PROTOCOL") or "v1"
    if protocol not in PROTOCOL_OVERRIDES:
        raise ValueError(f"SKIN_PROTOCOL={protocol!r}: choose one of {', '.join(PROTOCOL_OVERRIDES)}")
    return protocol


def read_properties(path: Path) -> dict[str, str]:
    properties = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def write_properties(properties: dict[str, str], path: Path) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


@dataclass
class TorchServe:
    """One TorchServe process tree; ``ports`` maps inference/management/metrics to port numbers."""

    home: Path = DEFAULT_HOME
    model_store: Path = REPO / "model_store"
    models: str = "skin=skin.mar"
    ports: dict[str, int] = field(default_factory=lambda: {
        "inference": 8080, "management": 8081, "metrics": 8082,
        "grpc_inference": 7070, "grpc_management": 7071})
    overrides: dict[str, str] = field(default_factory=dict)
    protocol: str = "v1"
    process: subprocess.Popen | None = None

    @classmethod
    def on_free_ports(cls, home: Path, **kwargs) -> "TorchServe":
        return cls(home=home, ports={api: free_port() for api in (*ADDRESS_KEYS, *GRPC_PORT_KEYS)},
                   **kwargs)

    def url(self, api: str) -> str:
        return f"http://127.0.0.1:{self.ports[api]}"

    def inference_url(self, model: str = "skin") -> str:
        """Where this instance takes images, in its protocol."""
        return self.url("inference") + inference_path(self.protocol, model)

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE_NAME

    def headers(self, api: str = "inference") -> dict[str, str]:
        return {"Authorization": f"Bearer {read_key(self.key_file, api)}"}

    def write_config(self) -> Path:
        properties = read_properties(BASE_CONFIG)
        properties.update({key: self.url(api) for api, key in ADDRESS_KEYS.items()})
        properties.update({key: str(self.ports[api]) for api, key in GRPC_PORT_KEYS.items()})
        properties.update(model_store=str(self.model_store.resolve()), load_models=self.models)
        properties.update(PROTOCOL_OVERRIDES[self.protocol])
        properties.update(self.overrides)
        return write_properties(properties, self.home / "config.properties")

    def environment(self) -> dict[str, str]:
        scratch = self.home / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, "TEMP": str(scratch), "TMPDIR": str(scratch),
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": ""}

    def start(self, log_to_files: bool = True) -> None:
        """Launch TorchServe in the foreground as a child process (logs in ``home``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        command = [str(Path(sys.executable).parent / "torchserve"), "--start", "--foreground",
                   "--ncs", "--ts-config", str(self.write_config())]
        output = open(self.home / "torchserve.out", "wb") if log_to_files else None
        self.process = subprocess.Popen(command, cwd=self.home, env=self.environment(),
                                        stdout=output, stderr=subprocess.STDOUT if output else None)

    @contextlib.contextmanager
    def running(self, timeout: float = 180) -> Iterator["TorchServe"]:
        """Start, wait until the model is READY, and always stop, whatever happens inside."""
        self.start()
        try:
            self.wait_ready(timeout=timeout)
            yield self
        finally:
            self.stop()

    def wait_ready(self, model: str = "skin", timeout: float = 180) -> float:
        """Block until ``model`` has a READY worker; returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited with {self.process.returncode}; "
                                   f"see {self.home / 'logs'}")
            if self.model_status(model) == "READY":
                return time.monotonic() - started
            time.sleep(0.5)
        raise TimeoutError(f"{model} not READY after {timeout:.0f}s; see {self.home / 'logs'}")

    def model_status(self, model: str) -> str | None:
        """The first worker's status, or None while the server or its key file is not up."""
        try:
            response = requests.get(f"{self.url('management')}/models/{model}",
                                    headers=self.headers("management"), timeout=5)
        except (requests.ConnectionError, FileNotFoundError, KeyError, json.JSONDecodeError):
            return None
        if response.status_code != 200:
            return None
        workers = response.json()[0].get("workers", [])
        return "READY" if any(w.get("status") == "READY" for w in workers) else "LOADING"

    def stop(self, timeout: float = 60) -> None:
        """Stop the Java frontend (it takes its Python workers along) and wait for it."""
        subprocess.run([str(Path(sys.executable).parent / "torchserve"), "--stop", "--foreground"],
                       cwd=self.home, env=self.environment(), capture_output=True, timeout=timeout + 10)
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Run TorchServe with SKIN in the foreground.")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    args = parser.parse_args()
    # Ctrl-C and SIGTERM both unwind through running(), which stops TorchServe.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with TorchServe(home=args.home, protocol=protocol_from_env()).running() as server:
            print(f"\nSKIN is READY: {server.inference_url()} "
                  f"(key in {server.key_file}, logs in {server.home})", flush=True)
            server.process.wait()
    except KeyboardInterrupt:
        print("TorchServe stopped.", flush=True)


if __name__ == "__main__":
    main()
