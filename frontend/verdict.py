"""The gate's verdict in a TorchServe answer: whether the photo is one the model can read at all.

A refused photo still comes back with all eight classes (for ops and research), but the page shows
why it was refused and how to take it again instead of a class.
"""
from __future__ import annotations

from dataclasses import dataclass

from contract.refusals import ACCEPTED


@dataclass(frozen=True)
class GateVerdict:
    accepted: bool
    reason: str  # contract.refusals.REASONS; a newer server may send one this page does not know
    detail: str  # the server's sentence, in English

    @classmethod
    def from_response(cls, gate: dict) -> "GateVerdict":
        """Parse the answer's ``gate`` object; raises ValueError when it is malformed."""
        try:
            accepted, reason, detail = gate["accepted"], str(gate["reason"]), str(gate["detail"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"unexpected gate verdict from the model server: {exc!r}") from None
        if not isinstance(accepted, bool) or accepted != (reason == ACCEPTED):
            raise ValueError(f"inconsistent gate verdict from the model server: {gate}")
        return cls(accepted, reason, detail)
