"""TorchServe's bearer keys: where a client reads them, and the page's copy of the inference key.

    python -m api.keys page-key KEY_FILE PAGE_KEY_FILE   # the inference key alone, for a page

TorchServe 0.12 writes key_file.json into its working directory with three keys: ``inference``,
``management`` and ``API`` (the one that may rotate the other two with ``POST /token``). Keys expire
after ``token_expiration_min``; the launcher renews them well before that (serve/key_rotation.py),
and every client re-reads its key when TorchServe refuses the one it holds.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger(__name__)
# TorchServe rewrites key_file.json in place, so a reader can catch it half written.
PARTIAL_READ_RETRIES = 5
PARTIAL_READ_PAUSE_S = 0.05
# After a refusal, how long a client waits for a rotation in progress to reach its key file.
REFRESH_WAIT_S = 2.0


def read_keys(key_file: Path) -> dict:
    """The whole key file; raises FileNotFoundError, or ValueError when it is not a key file."""
    for attempt in range(PARTIAL_READ_RETRIES):
        try:
            keys = json.loads(Path(key_file).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{key_file} not found: is TorchServe running from that folder?") from None
        except json.JSONDecodeError:
            if attempt == PARTIAL_READ_RETRIES - 1:
                raise ValueError(f"{key_file} is not JSON") from None
            time.sleep(PARTIAL_READ_PAUSE_S)
            continue
        if not isinstance(keys, dict):
            raise ValueError(f"{key_file} is not TorchServe's key file")
        return keys
    raise AssertionError("unreachable")


def read_key(key_file: Path, api: str = "inference") -> str:
    """The bearer key for ``api`` ("inference", "management" or "API") from a key file."""
    try:
        return str(read_keys(key_file)[api]["key"])
    except (KeyError, TypeError):
        raise ValueError(f"{key_file} has no {api} key") from None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only, from its first byte, and swap it in atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def write_inference_key(key_file: Path, target: Path) -> None:
    """Copy only the inference key into ``target``: what the page needs, and nothing that manages."""
    write_private(target, json.dumps({"inference": read_keys(key_file)["inference"]}, indent=2))


@dataclass
class KeySource:
    """The key one client sends: a fixed token, or one API's entry in a key file, re-read on demand."""

    key_file: Path | None = None
    api: str = "inference"
    token: str | None = None
    _key: str | None = field(default=None, repr=False)
    _read_stamp: int | None = field(default=None, repr=False)

    def key(self) -> str | None:
        """The current key; None when there is none to read (no file yet, or a stopped server).
        A key file that has changed since the last read (a rotation) is read again."""
        stamp = self._stamp()
        if self._key is None or stamp != self._read_stamp:
            self._key, self._read_stamp = self._read(), stamp
        return self._key

    def refresh(self, wait_s: float = REFRESH_WAIT_S) -> bool:
        """Re-read after a refusal; True when a different key came, waiting up to ``wait_s`` for a
        rotation that has changed the server's key but not yet the file."""
        if self.token:
            return False
        deadline = time.monotonic() + wait_s
        while True:
            fresh = self._read()
            if fresh is not None and fresh != self._key:
                self._key = fresh
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def headers(self) -> dict[str, str]:
        key = self.key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def describe(self) -> str:
        """Where the key comes from, for logs and operators."""
        return "SKIN_TOKEN" if self.token else f"the {self.api} key in {self.key_file}"

    def _stamp(self) -> int | None:
        if self.token or self.key_file is None:
            return None
        try:
            return Path(self.key_file).stat().st_mtime_ns
        except OSError:
            return None

    def _read(self) -> str | None:
        if self.token:
            return self.token
        if self.key_file is None:
            return None
        try:
            return read_key(self.key_file, self.api)
        except (OSError, ValueError):
            return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Copy the inference key alone out of a key file "
                                     "(for a page run against a container's TorchServe).")
    parser.add_argument("command", choices=["page-key"])
    parser.add_argument("key_file", type=Path, help="TorchServe's key_file.json")
    parser.add_argument("page_key_file", type=Path, help="where the page's key file goes (mode 0600)")
    args = parser.parse_args()
    write_inference_key(args.key_file, args.page_key_file)
    print(f"wrote {args.page_key_file}: the inference key alone")


if __name__ == "__main__":
    main()
