"""`make serve`: TorchServe and the SKIN page together, both stopped on Ctrl-C, SIGTERM or SIGHUP.

    python -m serve.launcher            # TorchServe on 8080-8082 (home .run/serve), page 8501
    SKIN_SSL=1 python -m serve.launcher  # the page over HTTPS on the LAN address, for phones
    SKIN_PROTOCOL=v2 python -m serve.launcher  # TorchServe speaks KServe v2; so does the page

The page gets the inference key alone (page_key.json); the keys are renewed at half their lifetime
(SKIN_KEY_ROTATION_S overrides the interval).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

import settings
from api.client import protocol_from_env
from serve.certificate import Tls
from serve.page import (
    access_environment,
    announce,
    page_address,
    page_environment,
    streamlit_command,
    tls_from_env,
)
from serve.processes import die_with_parent, stop_process
from serve.torchserve import TorchServe

PAGE_START_TIMEOUT_S = 60
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start_page(server: TorchServe, port: int, tls: Tls | None,
               access: dict[str, str]) -> subprocess.Popen:
    """Streamlit, pointed at ``server``. In its own session so that a Ctrl-C reaches only us, and
    ended by the kernel if we die, so that it never serves on alone."""
    environment = page_environment({
        "SKIN_INFERENCE_URL": server.inference_url(), "SKIN_PROTOCOL": server.protocol,
        "SKIN_KEY_FILE": str(server.page_key_file), **access})
    with open(server.home / "streamlit.out", "wb") as log:
        return subprocess.Popen(streamlit_command(port, tls), cwd=settings.REPO, env=environment,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent)


def wait_for_page(page: subprocess.Popen, port: int, tls: Tls | None) -> None:
    scheme = "https" if tls else "http"
    deadline = time.monotonic() + PAGE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if page.poll() is not None:
            raise RuntimeError(f"Streamlit exited with {page.returncode}")
        try:
            # The page's certificate chains to the local CA and names the address it listens on.
            if requests.get(f"{scheme}://{page_address(tls)}:{port}/_stcore/health", timeout=2,
                            verify=str(tls.ca) if tls else True).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the page did not answer within {PAGE_START_TIMEOUT_S}s")


def raise_interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="Run TorchServe and the SKIN page together.")
    parser.add_argument("--home", type=Path, default=settings.SERVE_HOME, help="TorchServe's folder")
    parser.add_argument("--model-store", type=Path, default=settings.MODEL_STORE)
    parser.add_argument("--free-ports", action="store_true",
                        help="TorchServe on free ports instead of 8080-8082 (beside another one)")
    parser.add_argument("--port", type=int, default=settings.PAGE_PORT, help="the page's port")
    args = parser.parse_args()
    tls = tls_from_env()
    access = access_environment(tls)
    options = {"model_store": args.model_store, "protocol": protocol_from_env()}
    server = (TorchServe.on_free_ports(args.home, **options) if args.free_ports
              else TorchServe(home=args.home, **options))
    rotation = os.environ.get("SKIN_KEY_ROTATION_S")
    # Set them all explicitly: a launcher may have started us with SIGINT or SIGHUP ignored, and a
    # closed terminal (SIGHUP) must stop everything as Ctrl-C does.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, raise_interrupt)
    page = rotator = None
    try:
        server.start()
        # The page reads its key file at its first request, by when the key is copied there.
        page = start_page(server, args.port, tls, access)
        print(f"Starting TorchServe ({server.inference_url()}) and the page; "
              f"logs in {server.home}", flush=True)
        waited = server.wait_ready()
        server.write_page_key()
        rotator = server.key_rotator(float(rotation) if rotation else None)
        rotator.start()
        wait_for_page(page, args.port, tls)
        print(f"\nSKIN is ready after {waited:.0f}s. {announce(args.port, tls, access)}"
              "\n(Ctrl-C stops both)", flush=True)
        while page.poll() is None and server.alive():
            time.sleep(1)
        print("A process exited on its own; stopping the other.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping SKIN…", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"SKIN did not start: {exc}; see the logs in {server.home}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave a server behind.
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)
        if rotator is not None:
            rotator.stop()
        if page is not None:
            stop_process(page)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
