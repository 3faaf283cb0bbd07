"""Run the protocol's front on loopback (serve/torchserve.py starts it beside a v2 TorchServe).

    python -m oip --port 8080 --torchserve http://127.0.0.1:8085 --management http://127.0.0.1:8081 \
        [--key-file .run/serve/key_file.json]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

import settings
from api.keys import KeySource
from api.management import ManagementClient
from oip.front import Backend, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--torchserve", required=True, help="TorchServe's inference address")
    parser.add_argument("--management", required=True, help="TorchServe's management address")
    parser.add_argument("--key-file", type=Path,
                        help="TorchServe's key file; without it no key is asked (token "
                             "authorization off)")
    args = parser.parse_args()
    keys = KeySource(args.key_file, "inference") if args.key_file else None
    management = ManagementClient(args.management, KeySource(args.key_file, "management"))
    backend = Backend(args.torchserve, management, keys)
    # The same limit as TorchServe's: a body the front takes, TorchServe takes too.
    uvicorn.run(create_app(backend, settings.MAX_REQUEST_BYTES), host=settings.LOOPBACK, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
