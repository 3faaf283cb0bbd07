"""The gate's verdict in a TorchServe answer: whether the photo is one the model can read at all.

A refused photo still comes back with all eight classes (for ops and research), but the page shows
why it was refused and how to take it again instead of a class.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateVerdict:
    accepted: bool
    reason: str  # one of contract.refusals.REASONS
    detail: str  # the server's sentence, in English

    @classmethod
    def from_checked(cls, gate: dict) -> GateVerdict:
        """The verdict of an answer that contract.checks has passed."""
        return cls(gate["accepted"], gate["reason"], gate["detail"])
