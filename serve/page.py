"""Start the SKIN page with Streamlit: plain HTTP on this machine, or HTTPS for phones (SKIN_SSL=1).

Browsers allow the camera only on HTTPS or localhost, so a phone on the same network needs HTTPS.
With SKIN_SSL=1 the page listens on this machine's LAN address only, with a certificate from
serve/certificate.py (kept in .run/tls/ and reused while it is valid, so a phone that trusted it
is not asked again), and serves nothing, not even Streamlit's WebSocket or upload endpoint, before
the pass phrase printed at start has been typed (frontend/access.py).

    python -m serve.page [--port 8501]
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

import settings
from frontend.access import PASS_PHRASE_VARIABLE, new_pass_phrase
from serve.certificate import Tls, ensure_certificate, fingerprint

# The page behind phone mode's pass phrase; Streamlit runs it as an ASGI app (st.App).
SERVED = settings.REPO / "frontend" / "served.py"


def lan_address() -> str:
    """The address other machines on the network reach this one at (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return sock.getsockname()[0]
        except OSError:
            return settings.LOOPBACK


def tls_from_env() -> Tls | None:
    return ensure_certificate(settings.TLS_DIR, lan_address()) if os.environ.get("SKIN_SSL") == "1" else None


def page_address(tls: Tls | None) -> str:
    """Plain HTTP carries photos unencrypted, so it stays on this machine; HTTPS listens on the
    one LAN address that the certificate names, not on every interface."""
    return tls.address if tls else settings.LOOPBACK


def streamlit_command(port: int = settings.PAGE_PORT, tls: Tls | None = None) -> list[str]:
    command = [sys.executable, "-m", "streamlit", "run", str(SERVED),
               "--server.headless", "true", "--server.port", str(port),
               "--server.maxUploadSize", str(settings.UPLOAD_LIMIT_MB),
               "--server.address", page_address(tls),
               "--browser.gatherUsageStats", "false",
               # A failure the page does not handle shows a short notice, never a traceback.
               "--client.showErrorDetails", "none", "--client.toolbarMode", "viewer"]
    if tls is None:
        return command
    return command + ["--server.sslCertFile", str(tls.cert), "--server.sslKeyFile", str(tls.key)]


def page_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The page imports frontend/ and handler/ from the repository root."""
    return {**os.environ, "PYTHONPATH": str(settings.REPO), **(extra or {})}


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
    parser.add_argument("--port", type=int, default=settings.PAGE_PORT)
    args = parser.parse_args()
    tls = tls_from_env()
    access = access_environment(tls)
    print(f"SKIN page: {announce(args.port, tls, access)}", flush=True)
    os.chdir(settings.REPO)
    os.execve(sys.executable, streamlit_command(args.port, tls), page_environment(access))


if __name__ == "__main__":
    main()
