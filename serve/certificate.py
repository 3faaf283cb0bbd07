"""The phone page's HTTPS certificate: a leaf for this machine, issued by a one-off local CA that
may vouch only for this machine's own names, and whose private key is deleted once it has signed.

iOS lets the page open its WebSocket only when the certificate is trusted, and a phone lists a
certificate under Certificate Trust Settings only when it is a CA. A CA that the phone trusts
fully could vouch for any site, so this one is bound by nameConstraints (localhost, 127.0.0.1 and
the LAN address; e-mail and URI names only under .invalid, which no real name is), by
extendedKeyUsage (web servers alone), by pathlen:0 (no CA below it) and by a short life; and since
its key never outlives ``ensure_certificate``, copying .run/tls/ gives no one a way to sign
anything else.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

VALID_DAYS = 30
# A certificate this close to its end is replaced at the next start (the phone must trust anew).
RENEW_DAYS_BEFORE = 3
# Name types a CA may vouch for beyond DNS and IP names. A permitted subtree under .invalid (a
# reserved top-level domain) leaves it no real e-mail address or URI; with no subtree of a type at
# all, any name of that type would pass.
UNUSED_NAME_TYPES = ("email", "URI")


@dataclass(frozen=True)
class Tls:
    address: str  # the LAN address it names, which the page listens on
    ca: Path  # what a phone installs and trusts
    cert: Path  # the page's leaf certificate followed by the CA: the chain Streamlit sends
    key: Path  # the leaf's private key


def tls_files(directory: Path, address: str) -> Tls:
    return Tls(address, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")


def ensure_certificate(directory: Path, address: str, days: int = VALID_DAYS) -> Tls:
    """The page's certificate for ``address``, made anew when missing, near its end, or made for
    another address; reused otherwise, so that a phone that trusted it is not asked again."""
    tls = tls_files(directory, address)
    if all(path.exists() for path in (tls.ca, tls.cert, tls.key)) and still_good(tls):
        return tls
    if shutil.which("openssl") is None:
        raise SystemExit("SKIN_SSL=1 needs openssl to make a certificate: apt-get install openssl")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    names = names_for(address)
    with tempfile.TemporaryDirectory(prefix="skin-ca-") as scratch:
        ca_key = Path(scratch) / "ca-key.pem"
        make_ca(ca_key, tls.ca, names, days)
        make_leaf(ca_key, tls, names, days, Path(scratch))
    return tls


def names_for(address: str) -> list[str]:
    """The names the page's certificate carries, in OpenSSL's configuration syntax."""
    return ["DNS:localhost", "IP:127.0.0.1", *([f"IP:{address}"] if address != "127.0.0.1" else [])]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(ca_key: Path, ca_cert: Path, names: list[str], days: int) -> None:
    permitted = ",".join([*(f"permitted;{name}/255.255.255.255" if name.startswith("IP:")
                            else f"permitted;{name}" for name in names),
                          *(f"permitted;{kind}:.invalid" for kind in UNUSED_NAME_TYPES)])
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
             "-subj", "/CN=SKIN local CA", "-keyout", str(ca_key), "-out", str(ca_cert),
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "extendedKeyUsage=serverAuth",
             "-addext", f"nameConstraints=critical,{permitted}")


def make_leaf(ca_key: Path, tls: Tls, names: list[str], days: int, scratch: Path) -> None:
    request, extensions, leaf = scratch / "leaf.csr", scratch / "leaf.ext", scratch / "leaf.pem"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=SKIN page",
             "-keyout", str(tls.key), "-out", str(request))
    tls.key.chmod(0o600)
    extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                          "keyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth\n"
                          f"subjectAltName={','.join(names)}\n")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(tls.ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-CAserial", str(scratch / "ca.srl"), "-days", str(days),
             "-extfile", str(extensions), "-out", str(leaf))
    tls.cert.write_bytes(leaf.read_bytes() + tls.ca.read_bytes())


def fingerprint(certificate: Path) -> str:
    """The certificate's SHA-256 fingerprint as phones show it: colon-separated hex pairs."""
    text = subprocess.run(["openssl", "x509", "-in", str(certificate), "-noout", "-fingerprint",
                           "-sha256"], check=True, capture_output=True, text=True).stdout
    return text.strip().split("=", 1)[1]


def still_good(tls: Tls) -> bool:
    """Whether the leaf names exactly this machine's names (192.168.1.2 is not 192.168.1.23) and has
    more than RENEW_DAYS_BEFORE days left."""
    try:
        text = subprocess.run(["openssl", "x509", "-in", str(tls.cert), "-noout", "-enddate",
                               "-ext", "subjectAltName"], check=True, capture_output=True,
                              text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    end_line = next(line for line in text.splitlines() if line.startswith("notAfter="))
    end = datetime.strptime(end_line.removeprefix("notAfter="), "%b %d %H:%M:%S %Y %Z")
    left = end.replace(tzinfo=UTC) - datetime.now(UTC)
    alternative = text.partition("Subject Alternative Name:")[2].strip()
    named = alternative.splitlines()[0].split(", ") if alternative else []
    wanted = [name.replace("IP:", "IP Address:") for name in names_for(tls.address)]
    return left > timedelta(days=RENEW_DAYS_BEFORE) and named == wanted
