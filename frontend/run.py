"""Start the SKIN page with Streamlit: plain HTTP on this machine, or HTTPS for phones (SKIN_SSL=1).

Browsers allow the camera only on HTTPS or localhost, so a phone on the same network needs HTTPS.
With SKIN_SSL=1 the page listens on all interfaces with a self-signed certificate made by openssl
(kept in .run/tls/ and reused, so a phone that accepted it once is not asked again).

    python -m frontend.run [--port 8501]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.torchserve import BASE_CONFIG, read_properties

REPO = Path(__file__).resolve().parent.parent
APP = Path(__file__).with_name("app.py")
TLS_DIR = REPO / ".run" / "tls"
DEFAULT_PORT = 8501


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


def lan_address() -> str:
    """The address other machines on the network reach this one at (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def ensure_certificate(directory: Path = TLS_DIR) -> Tls:
    """A self-signed certificate for this machine's LAN address, made once and then reused."""
    tls = Tls(directory / "cert.pem", directory / "key.pem")
    if tls.cert.exists() and tls.key.exists():
        return tls
    if shutil.which("openssl") is None:
        raise SystemExit("SKIN_SSL=1 needs openssl to make a certificate: apt-get install openssl")
    directory.mkdir(parents=True, exist_ok=True)
    names = f"DNS:localhost,IP:127.0.0.1,IP:{lan_address()}"
    # What iOS needs before a user can trust the certificate (Safari opens Streamlit's WebSocket
    # only then): a SAN, serverAuth, at most 825 days, and CA:TRUE so it lists under
    # Certificate Trust Settings.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                    "-subj", "/CN=SKIN local", "-addext", f"subjectAltName={names}",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "extendedKeyUsage=serverAuth",
                    "-keyout", str(tls.key), "-out", str(tls.cert)],
                   check=True, capture_output=True)
    tls.key.chmod(0o600)
    return tls


def tls_from_env() -> Tls | None:
    return ensure_certificate() if os.environ.get("SKIN_SSL") == "1" else None


def upload_limit_mb(config: Path = BASE_CONFIG) -> int:
    """TorchServe's ``max_request_size`` in Streamlit's megabytes (MiB): the page takes any file
    the server would, and refuses up front what the server would answer with 413."""
    return int(read_properties(config)["max_request_size"]) // 2**20


def streamlit_command(port: int = DEFAULT_PORT, tls: Tls | None = None) -> list[str]:
    command = [sys.executable, "-m", "streamlit", "run", str(APP),
               "--server.headless", "true", "--server.port", str(port),
               "--server.maxUploadSize", str(upload_limit_mb()),
               "--browser.gatherUsageStats", "false",
               # A failure the page does not handle shows a short notice, never a traceback.
               "--client.showErrorDetails", "none", "--client.toolbarMode", "viewer"]
    if tls is None:
        # Plain HTTP carries the photos unencrypted, so it stays on this machine.
        return command + ["--server.address", "127.0.0.1"]
    return command + ["--server.address", "0.0.0.0", "--server.sslCertFile", str(tls.cert),
                      "--server.sslKeyFile", str(tls.key)]


def page_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The page imports frontend/ and handler/ from the repository root."""
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def page_url(port: int, tls: Tls | None) -> str:
    return f"https://{lan_address()}:{port}" if tls else f"http://localhost:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the SKIN page; TorchServe runs apart.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    tls = tls_from_env()
    print(f"SKIN page: {page_url(args.port, tls)}", flush=True)
    os.chdir(REPO)
    os.execve(sys.executable, streamlit_command(args.port, tls), page_environment())


if __name__ == "__main__":
    main()
