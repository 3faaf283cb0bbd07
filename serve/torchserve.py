"""Start, wait for and stop one TorchServe instance with its own ports and scratch folder.

`make serve` (serve/launcher.py) and ``python -m serve.torchserve`` (TorchServe alone, as
bench/gpu_run.sh runs it) use the repository's config.properties, its ports (settings.py) and scratch in
.run/serve. Tests and benchmarks use :class:`TorchServe` with free ports and a
temporary home, so they can run beside a live `make serve`: TorchServe keeps its pid file, socket
and unpacked models in TMPDIR/TEMP and writes key_file.json into its working directory, and all
three point into the instance's home here.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import settings
from api.client import inference_path, protocol_from_env
from api.keys import KeySource, read_key, write_inference_key
from api.management import ManagementClient
from serve.key_rotation import KeyRotator
from serve.processes import die_with_parent, process_tree, stop_process, stop_tree

ADDRESS_KEYS = {"inference": "inference_address", "management": "management_address",
                "metrics": "metrics_address"}
# TorchServe always opens its gRPC ports too, so a second instance needs its own.
GRPC_PORT_KEYS = {"grpc_inference": "grpc_inference_port", "grpc_management": "grpc_management_port"}
# The one archive speaks either protocol; only these configuration keys differ. v2 is the Open
# Inference Protocol (KServe v2), translated by handler/kservev2_envelope.py.
PROTOCOL_OVERRIDES = {"v1": {}, "v2": {"service_envelope": "kservev2"}}
DEFAULT_PORTS = {"inference": settings.INFERENCE_PORT, "management": settings.MANAGEMENT_PORT,
                 "metrics": settings.METRICS_PORT, "grpc_inference": settings.GRPC_INFERENCE_PORT,
                 "grpc_management": settings.GRPC_MANAGEMENT_PORT}
FRONT_START_TIMEOUT_S = 30
DEFAULT_TOKEN_EXPIRATION_MIN = 60.0  # TorchServe's, when the configuration names none
LOWEST_FREE_PORT = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOG_LINES_ON_EXIT = 10
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range and never handed out before
    by this process. Ports from bind(0) are ephemeral ones: in the seconds before the JVM binds
    them, any outgoing connection may take one as its local port (and two bind(0) calls may return
    the same one), and TorchServe then exits on "Address already in use"."""
    ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 32768
    while True:
        port = random.randrange(LOWEST_FREE_PORT, max(ephemeral_low, LOWEST_FREE_PORT + 1000))
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


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

    home: Path = settings.SERVE_HOME
    model_store: Path = settings.MODEL_STORE
    models: str = f"{settings.MODEL_NAME}={settings.ARCHIVE.name}"
    ports: dict[str, int] | None = None  # DEFAULT_PORTS, with the front's in v2
    overrides: dict[str, str] = field(default_factory=dict)
    protocol: str = "v1"
    process: subprocess.Popen | None = None
    front: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        if self.ports is None:
            self.ports = ({**DEFAULT_PORTS, "front": DEFAULT_PORTS["inference"],
                           "inference": settings.BEHIND_FRONT_PORT} if self.protocol == "v2" else dict(DEFAULT_PORTS))

    @classmethod
    def on_free_ports(cls, home: Path, **kwargs) -> TorchServe:
        apis = (*ADDRESS_KEYS, *GRPC_PORT_KEYS, *(["front"] if kwargs.get("protocol") == "v2" else []))
        return cls(home=home, ports={api: free_port() for api in apis}, **kwargs)

    def url(self, api: str) -> str:
        """TorchServe's own API, or the v2 front's ("front")."""
        return f"http://127.0.0.1:{self.ports[api]}"

    def inference_url(self, model: str = "skin") -> str:
        """Where this instance takes images, in its protocol: in v2 through the front."""
        api = "front" if self.protocol == "v2" else "inference"
        return self.url(api) + inference_path(self.protocol, model)

    @property
    def key_file(self) -> Path:
        return self.home / settings.KEY_FILE_NAME

    @property
    def page_key_file(self) -> Path:
        """The inference key alone, for the page (write_page_key copies it there)."""
        return self.home / settings.PAGE_KEY_FILE_NAME

    def headers(self, api: str = "inference") -> dict[str, str]:
        return {"Authorization": f"Bearer {read_key(self.key_file, api)}"}

    def management(self) -> ManagementClient:
        return ManagementClient(self.url("management"), KeySource(self.key_file, "management"))

    def write_config(self) -> Path:
        properties = read_properties(settings.TORCHSERVE_CONFIG)
        # Relative to the working directory, the home; empty, so the workflow API finds nothing.
        (self.home / properties["workflow_store"]).mkdir(mode=0o700, exist_ok=True)
        properties.update({key: self.url(api) for api, key in ADDRESS_KEYS.items()})
        properties.update({key: str(self.ports[api]) for api, key in GRPC_PORT_KEYS.items()})
        properties.update(model_store=str(self.model_store.resolve()), load_models=self.models)
        properties.update(PROTOCOL_OVERRIDES[self.protocol])
        properties.update(self.overrides)
        return write_properties(properties, self.home / "config.properties")

    def environment(self) -> dict[str, str]:
        scratch = self.home / "tmp"
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, "TEMP": str(scratch), "TMPDIR": str(scratch),
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": ""}

    def start(self, log_to_files: bool = True) -> None:
        """Launch TorchServe in the foreground as a child process (logs in ``home``)."""
        # The home holds the keys: this user's alone, and so is every file TorchServe makes there
        # (it creates key_file.json with the umask's mode and only then narrows it to 0600).
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self.key_file.unlink(missing_ok=True)
        command = [str(Path(sys.executable).parent / "torchserve"), "--start", "--foreground",
                   "--ncs", "--ts-config", str(self.write_config())]
        output = open(self.home / "torchserve.out", "wb") if log_to_files else None
        self.process = subprocess.Popen(command, cwd=self.home, env=self.environment(), umask=0o077,
                                        stdout=output, stderr=subprocess.STDOUT if output else None)
        if self.protocol == "v2":
            self.start_front(log_to_files)

    def start_front(self, log_to_files: bool) -> None:
        """The protocol's routes that TorchServe lacks (oip/), asking the key TorchServe asks."""
        properties = read_properties(self.home / "config.properties")
        keys = [] if properties.get("disable_token_authorization") == "true" else [
            "--key-file", str(self.key_file)]
        command = [sys.executable, "-m", "oip", "--port", str(self.ports["front"]),
                   "--torchserve", self.url("inference"), "--management", self.url("management"),
                   *keys]
        output = open(self.home / "front.out", "wb") if log_to_files else None
        self.front = subprocess.Popen(command, cwd=settings.REPO, env={**os.environ, "PYTHONPATH": str(settings.REPO)},
                                      stdout=output, stderr=subprocess.STDOUT if output else None,
                                      preexec_fn=die_with_parent)

    def wait_front(self) -> None:
        deadline = time.monotonic() + FRONT_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.front.poll() is not None:
                raise RuntimeError(f"the v2 front exited with {self.front.returncode}; "
                                   f"see {self.home / 'front.out'}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.ports["front"])) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the v2 front did not listen within {FRONT_START_TIMEOUT_S}s")

    @contextlib.contextmanager
    def running(self, timeout: float = 180) -> Iterator[TorchServe]:
        """Start, wait until the model is READY, and always stop, whatever happens inside."""
        self.start()
        try:
            self.wait_ready(timeout=timeout)
            yield self
        finally:
            self.stop()

    def wait_ready(self, model: str = "skin", timeout: float = 180) -> float:
        """Block until ``model`` has a READY worker; returns the seconds waited."""
        try:
            waited = self.management().wait_ready(model, timeout, alive=self._check_alive)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; see {self.home / 'logs'}") from None
        if self.front is not None:
            self.wait_front()
        return waited

    def alive(self) -> bool:
        """Whether TorchServe, and in v2 its front, still run."""
        return all(process is not None and process.poll() is None
                   for process in (self.process, *([self.front] if self.protocol == "v2" else [])))

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            # The launcher exits 0 whatever ended the JVM; the cause is at the end of its output,
            # between stack frames.
            output = self.home / "torchserve.out"
            lines = output.read_text(errors="replace").splitlines() if output.exists() else []
            tail = [line for line in lines if not line.startswith("\tat ")][-LOG_LINES_ON_EXIT:]
            raise RuntimeError(f"TorchServe exited with {self.process.returncode}; "
                               f"see {self.home / 'logs'}" + "".join(f"\n  {line}" for line in tail))

    def write_page_key(self) -> None:
        write_inference_key(self.key_file, self.page_key_file)

    def key_rotator(self, interval_s: float | None = None) -> KeyRotator:
        """Renews the keys every ``interval_s`` (default: half their lifetime) and the page's copy;
        call ``start()`` on it once the server is READY."""
        if interval_s is None:
            expiration_min = float(read_properties(self.home / "config.properties")
                                   .get("token_expiration_min", DEFAULT_TOKEN_EXPIRATION_MIN))
            interval_s = KeyRotator.interval_for(expiration_min)
        return KeyRotator(self.url("management"), self.key_file, interval_s,
                          after_rotation=self.write_page_key)

    def stop(self, timeout: float = 60) -> None:
        """Stop the Java frontend and its Python workers, and wait for them. When `torchserve
        --stop` fails (no pid file, a hung frontend), the whole process tree is ended instead."""
        if self.front is not None:
            stop_process(self.front)
            self.front = None
        tree = process_tree(self.process.pid) if self.process is not None else []
        subprocess.run([str(Path(sys.executable).parent / "torchserve"), "--stop", "--foreground"],
                       cwd=self.home, env=self.environment(), capture_output=True, timeout=timeout + 10)
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        stop_tree([process for process in tree if process.is_running()], timeout=15)
        if self.process is not None:
            self.process.wait()
            self.process = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Run TorchServe with SKIN in the foreground.")
    parser.add_argument("--home", type=Path, default=settings.SERVE_HOME)
    args = parser.parse_args()
    # Ctrl-C and SIGTERM both unwind through running(), which stops TorchServe.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with TorchServe(home=args.home, protocol=protocol_from_env()).running() as server:
            print(f"\nSKIN is READY: {server.inference_url()} "
                  f"(key in {server.key_file}, logs in {server.home})", flush=True)
            rotator = server.key_rotator()
            rotator.start()
            server.process.wait()
    except KeyboardInterrupt:
        print("TorchServe stopped.", flush=True)


if __name__ == "__main__":
    main()
