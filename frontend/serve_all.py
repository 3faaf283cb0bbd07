"""`make serve`: TorchServe and the SKIN page together, both stopped on Ctrl-C or SIGTERM.

    python -m frontend.serve_all            # TorchServe on 8080-8082 (home .run/serve), page 8501
    SKIN_SSL=1 python -m frontend.serve_all  # the page over HTTPS on all interfaces, for phones
    SKIN_PROTOCOL=v2 python -m frontend.serve_all  # TorchServe speaks KServe v2; so does the page
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from frontend.run import (DEFAULT_PORT, REPO, Tls, page_environment, page_url, streamlit_command,
                          tls_from_env)
from tools.torchserve import DEFAULT_HOME, TorchServe, protocol_from_env

PAGE_START_TIMEOUT_S = 60


def start_page(server: TorchServe, port: int, tls: Tls | None) -> subprocess.Popen:
    """Streamlit, pointed at ``server``; in its own session so that a Ctrl-C reaches only us."""
    environment = page_environment({
        "SKIN_INFERENCE_URL": server.inference_url(), "SKIN_PROTOCOL": server.protocol,
        "SKIN_KEY_FILE": str(server.key_file)})
    with open(server.home / "streamlit.out", "wb") as log:
        return subprocess.Popen(streamlit_command(port, tls), cwd=REPO, env=environment,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_page(page: subprocess.Popen, port: int, tls: Tls | None) -> None:
    scheme = "https" if tls else "http"
    deadline = time.monotonic() + PAGE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if page.poll() is not None:
            raise RuntimeError(f"Streamlit exited with {page.returncode}")
        try:
            # The self-signed certificate names 127.0.0.1, so it verifies itself.
            if requests.get(f"{scheme}://127.0.0.1:{port}/_stcore/health", timeout=2,
                            verify=str(tls.cert) if tls else True).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the page did not answer within {PAGE_START_TIMEOUT_S}s")


def stop_page(page: subprocess.Popen) -> None:
    page.terminate()
    try:
        page.wait(timeout=15)
    except subprocess.TimeoutExpired:
        page.kill()
        page.wait()


def raise_interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="Run TorchServe and the SKIN page together.")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="TorchServe's folder")
    parser.add_argument("--model-store", type=Path, default=REPO / "model_store")
    parser.add_argument("--free-ports", action="store_true",
                        help="TorchServe on free ports instead of 8080-8082 (beside another one)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the page's port")
    args = parser.parse_args()
    tls = tls_from_env()
    options = {"model_store": args.model_store, "protocol": protocol_from_env()}
    server = (TorchServe.on_free_ports(args.home, **options) if args.free_ports
              else TorchServe(home=args.home, **options))
    # Set both explicitly: a launcher may have started us with SIGINT ignored.
    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)
    page = None
    try:
        server.start()
        page = start_page(server, args.port, tls)
        print(f"Starting TorchServe ({server.inference_url()}) and the page; "
              f"logs in {server.home}", flush=True)
        waited = server.wait_ready()
        wait_for_page(page, args.port, tls)
        print(f"\nSKIN is ready after {waited:.0f}s. Open {page_url(args.port, tls)}"
              "  (Ctrl-C stops both)", flush=True)
        while page.poll() is None and server.process.poll() is None:
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
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if page is not None:
            stop_page(page)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
