"""Renewing TorchServe's inference and management keys before they expire, with the API key.

Keys expire after ``token_expiration_min``; the launcher renews them at half their lifetime and
copies the page's key after each renewal. Clients re-read their key files (api/keys.py).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from api.keys import read_key

LOG = logging.getLogger(__name__)
ROTATED_APIS = ("inference", "management")
# Rotate when this share of a key's lifetime has passed: a day's key is renewed after 12 hours.
ROTATE_AT = 0.5
# After a failed rotation the keys have less than half their life left: try again after this,
# doubling at each failure, never later than the regular interval.
RETRY_FIRST_S = 5.0


@dataclass
class KeyRotator:
    """Renews the inference and management keys with ``POST /token`` and the API key, every
    ``interval_s``, then calls ``after_rotation`` (which copies the page's key, for one)."""

    management_url: str
    key_file: Path
    interval_s: float
    after_rotation: Callable[[], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @staticmethod
    def interval_for(expiration_min: float) -> float:
        return expiration_min * 60 * ROTATE_AT

    def rotate(self) -> None:
        """Renew both keys now; raises RuntimeError when TorchServe refuses."""
        api_key = read_key(self.key_file, "API")
        for api in ROTATED_APIS:
            response = requests.post(f"{self.management_url}/token", params={"type": api},
                                     headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
            if response.status_code != 200:
                raise RuntimeError(f"POST /token?type={api}: HTTP {response.status_code}: "
                                   f"{response.text[:200]}")
        if self.after_rotation is not None:
            self.after_rotation()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="key-rotator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        wait, retry = self.interval_s, RETRY_FIRST_S
        while not self._stop.wait(wait):
            try:
                self.rotate()
            except (OSError, ValueError, RuntimeError) as exc:
                wait, retry = min(retry, self.interval_s), retry * 2
                LOG.warning("key rotation failed, retrying in %.0f s: %s", wait, exc)
            else:
                wait, retry = self.interval_s, RETRY_FIRST_S
