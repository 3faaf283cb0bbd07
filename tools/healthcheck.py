"""Is TorchServe healthy? Exit 0 when ``/ping`` answers Healthy, 1 otherwise (the image's HEALTHCHECK).

    python -m tools.healthcheck [--url http://127.0.0.1:8080/ping] [--key-file key_file.json]

TorchServe 0.12 checks the inference key on /ping too, so a probe that sends none reads every
healthy server as down. The key comes from the key file that TorchServe writes into its working
directory; without that file (token authorization off) the probe sends no key.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import settings
from api.client import Endpoint
from api.keys import KeySource
from api.problems import ServerProblem

TIMEOUT_S = 5.0


def ping(url: str, key_file: Path) -> str | None:
    """None when TorchServe answers Healthy, else what went wrong."""
    try:
        response = Endpoint(KeySource(key_file, "inference")).send("GET", url, timeout=TIMEOUT_S)
    except ServerProblem as failure:
        return f"no answer from {url}: {failure.problem.value}"
    try:
        status = response.json().get("status")
    except ValueError:
        status = None
    if response.status_code != 200 or status != "Healthy":
        return f"{url} answered {response.status_code}: {response.text[:200]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"{settings.INFERENCE_URL}/ping")
    parser.add_argument("--key-file", type=Path, default=Path(settings.KEY_FILE_NAME))
    args = parser.parse_args()
    problem = ping(args.url, args.key_file)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        sys.exit(1)
    print("healthy")


if __name__ == "__main__":
    main()
