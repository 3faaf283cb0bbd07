"""Write requirements-serve.lock: every package of pyproject.toml's serve extra that the container
image installs from PyPI, with its dependencies, each pinned to one version with the SHA-256 of its
wheel, for `pip install --require-hashes` (`make lock`).

    python -m tools.lock

torch and torchvision are left out: the image installs them from PyTorch's own index, in a step of
their own (Dockerfile). pip resolves on this machine, so the wheels are those for its platform,
Linux x86_64 and CPython 3.11, the image's. Run it again after changing the serve extra;
tests/test_container_image.py checks that the lock still agrees.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile

import settings
from tools.pins import pins

LOCK = settings.REPO / "requirements-serve.lock"
# What the image takes from PyTorch's index alone (--index-url, so no other index can answer).
TORCH_PACKAGES = ("torch", "torchvision")


def from_pypi() -> list[str]:
    """The serve extra's pins without the packages that come from PyTorch's index."""
    return [f"{name}=={version}" for name, version in pins("serve").items() if name not in TORCH_PACKAGES]


def resolve(lines: list[str]) -> list[dict]:
    """pip's installation report for ``lines``: each package, version and archive hash."""
    with tempfile.NamedTemporaryFile("w", dir=settings.REPO, suffix=".txt") as requirements:
        requirements.write("\n".join(lines) + "\n")
        requirements.flush()
        report = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--only-binary=:all:", "--report", "-", "-r", requirements.name],
            check=True, capture_output=True, text=True).stdout
    return json.loads(report)["install"]


def canonical(name: str) -> str:
    """A project's name as PyPI compares them (PEP 503): prometheus_client is prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_text(packages: list[dict]) -> str:
    entries = sorted((canonical(package["metadata"]["name"]), package["metadata"]["version"],
                      package["download_info"]["archive_info"]["hashes"]["sha256"])
                     for package in packages)
    header = ("# Written by `make lock` (python -m tools.lock) from pyproject.toml's serve extra;\n"
              "# installed with --require-hashes. torch and torchvision come from PyTorch's index\n"
              "# instead (Dockerfile).\n")
    return header + "".join(f"{name}=={version} \\\n    --hash=sha256:{digest}\n"
                            for name, version, digest in entries)


def main() -> None:
    LOCK.write_text(lock_text(resolve(from_pypi())))
    print(f"wrote {LOCK}")


if __name__ == "__main__":
    main()
