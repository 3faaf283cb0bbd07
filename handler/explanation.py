"""What an explanation request asks for.

``POST /explanations/skin`` takes the image as ``/predictions/skin`` does; the class to explain comes
from a multipart field ``target`` or a JSON key ``target`` (TorchServe 0.12 passes no query
parameters to handlers), and defaults to the class the network ranks first. contract.answer builds
the answer.
"""
from __future__ import annotations

from contract.classes import CODES

TARGET_FIELD = "target"


class UnknownClassError(ValueError):
    """The requested class code is not one of contract/classes.json's; the message lists them."""


def requested_class(row: dict) -> int | None:
    """The index of the class one request asks to explain, or None for the top class."""
    value = row.get(TARGET_FIELD)
    body = row.get("body")
    if value is None and isinstance(body, dict):
        value = body.get(TARGET_FIELD)
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", errors="replace")
    if value is None or not str(value).strip():
        return None
    code = str(value).strip().upper()
    if code not in CODES:
        raise UnknownClassError(f"unknown class code {str(value)[:40]!r}; "
                                f"the target must be one of {', '.join(CODES)}")
    return CODES.index(code)
