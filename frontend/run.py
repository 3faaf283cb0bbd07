"""Start the SKIN page with Streamlit: plain HTTP on this machine, or HTTPS for phones (SKIN_SSL=1).

Browsers allow the camera only on HTTPS or localhost, so a phone on the same network needs HTTPS.
With SKIN_SSL=1 the page listens on this machine's LAN address only, with a certificate from
frontend/certificate.py (kept in .run/tls/ and reused while it is valid, so a phone that trusted it
is not asked again), and serves nothing, not even Streamlit's WebSocket or upload endpoint, before
the pass phrase printed at start has been typed (frontend/access.py).

    python -m frontend.run [--port 8501]
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from tools.torchserve import BASE_CONFIG, read_properties
from frontend.access import PASS_PHRASE_VARIABLE, new_pass_phrase
from frontend.certificate import Tls, ensure_certificate, fingerprint

REPO = Path(__file__).resolve().parent.parent
# The page behind phone mode's pass phrase; Streamlit runs it as an ASGI app (st.App).
SERVED = Path(__file__).with_name("served.py")
TLS_DIR = REPO / ".run" / "tls"
DEFAULT_PORT = 8501
LOOPBACK = "127.0.0.1"
MULTIPART_MARGIN_MB = 1


def lan_address() -> str:
    """The address other machines on the network reach this one at (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return sock.getsockname()[0]
        except OSError:
            return LOOPBACK


def tls_from_env() -> Tls | None:
    return ensure_certificate(TLS_DIR, lan_address()) if os.environ.get("SKIN_SSL") == "1" else None


def page_address(tls: Tls | None) -> str:
    """Plain HTTP carries photos unencrypted, so it stays on this machine; HTTPS listens on the
    one LAN address that the certificate names, not on every interface."""
    return tls.address if tls else LOOPBACK


def upload_limit_mb(config: Path = BASE_CONFIG) -> int:
    """TorchServe's ``max_request_size`` in Streamlit's megabytes (MiB): the page takes any file
    the server would, and refuses up front what the server would answer with 413."""
    return int(read_properties(config)["max_request_size"]) // 2**20


def request_body_limit() -> int:
    """The largest body phone mode's gate lets through to Streamlit: an upload at the limit, and
    the multipart framing around it (Streamlit allows itself the same margin)."""
    return (upload_limit_mb() + MULTIPART_MARGIN_MB) * 2**20


def streamlit_command(port: int = DEFAULT_PORT, tls: Tls | None = None) -> list[str]:
    command = [sys.executable, "-m", "streamlit", "run", str(SERVED),
               "--server.headless", "true", "--server.port", str(port),
               "--server.maxUploadSize", str(upload_limit_mb()),
               "--server.address", page_address(tls),
               "--browser.gatherUsageStats", "false",
               # A failure the page does not handle shows a short notice, never a traceback.
               "--client.showErrorDetails", "none", "--client.toolbarMode", "viewer"]
    if tls is None:
        return command
    return command + ["--server.sslCertFile", str(tls.cert), "--server.sslKeyFile", str(tls.key)]


def page_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The page imports frontend/ and handler/ from the repository root."""
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def access_environment(tls: Tls | None) -> dict[str, str]:
    """Phone mode's pass phrase (a new one each start), or nothing on loopback."""
    return {PASS_PHRASE_VARIABLE: new_pass_phrase()} if tls else {}


def page_url(port: int, tls: Tls | None) -> str:
    return f"https://{page_address(tls)}:{port}" if tls else f"http://localhost:{port}"


def announce(port: int, tls: Tls | None, access: dict[str, str]) -> str:
    """What to open, and in phone mode the pass phrase and the certificate to install, with the
    fingerprint to check it by: whoever can intercept the LAN could hand a phone another one."""
    text = f"Open {page_url(port, tls)}"
    if tls:
        text += (f"\n  pass phrase: {access[PASS_PHRASE_VARIABLE]}"
                 f"\n  certificate for phones to install: {tls.ca}"
                 f"\n  its SHA-256 fingerprint, to compare on the phone before trusting it:"
                 f"\n    {fingerprint(tls.ca)}"
                 "\n  (see frontend/README.md, \"From a phone\")")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the SKIN page; TorchServe runs apart.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    tls = tls_from_env()
    access = access_environment(tls)
    print(f"SKIN page: {announce(args.port, tls, access)}", flush=True)
    os.chdir(REPO)
    os.execve(sys.executable, streamlit_command(args.port, tls), page_environment(access))


if __name__ == "__main__":
    main()
