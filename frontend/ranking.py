"""A TorchServe answer as the page shows it: the gate's verdict, every class, ranked, and whether to
raise a flag.

The flag ("see a dermatologist soon") fires when the malignant and pre-malignant classes (MEL, BCC,
SCC, AK) together reach the release's referral threshold. Training chooses that threshold on the
validation split so that the flag catches at least 95% of those lesions, and the handler returns it
with every answer; the page keeps no threshold of its own. Summing the four classes also catches a
photo whose probability is split between, say, BCC and SCC.
"""
from __future__ import annotations

from dataclasses import dataclass

from contract.checks import check_prediction
from contract.classes import BY_CODE, LesionClass
from frontend.verdict import GateVerdict


@dataclass(frozen=True)
class Score:
    lesion: LesionClass
    probability: float


@dataclass(frozen=True)
class Ranking:
    model: str
    version: str
    scores: tuple[Score, ...]  # most probable first
    referral_threshold: float  # the release's, from the answer
    gate: GateVerdict

    @classmethod
    def from_response(cls, body: dict) -> Ranking:
        """Parse the handler's 200 body; raises ValueError saying what is wrong when it breaks
        SKIN's contract."""
        check_prediction(body)
        scores = tuple(Score(BY_CODE[p["code"]], float(p["probability"])) for p in body["predictions"])
        return cls(body["model"], body["version"], scores, float(body["referral"]["threshold"]),
                   GateVerdict.from_checked(body["gate"]))

    @property
    def top(self) -> Score:
        return self.scores[0]

    @property
    def concerning(self) -> tuple[Score, ...]:
        return tuple(s for s in self.scores if s.lesion.is_concerning)

    @property
    def concerning_probability(self) -> float:
        return sum(s.probability for s in self.concerning)

    @property
    def flagged(self) -> bool:
        return self.concerning_probability >= self.referral_threshold
