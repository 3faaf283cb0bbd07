"""A TorchServe explanation as the page draws it: the class explained, and its heatmap over the frame
the model saw."""
from __future__ import annotations

from dataclasses import dataclass

from contract.checks import check_explanation
from contract.classes import BY_CODE, LesionClass


@dataclass(frozen=True)
class Explanation:
    lesion: LesionClass
    probability: float
    frame: tuple[int, int]  # (height, width) of the model's input, framed as imaging/framing.py does
    heatmap: tuple[tuple[float, ...], ...]  # rows over that frame, top first; values on [0, 1]

    @classmethod
    def from_response(cls, body: dict) -> Explanation:
        """Parse the handler's 200 body from /explanations; raises ValueError saying what is wrong
        when it is not one."""
        check_explanation(body)
        return cls(BY_CODE[body["class"]["code"]], float(body["class"]["probability"]),
                   (body["frame"]["height"], body["frame"]["width"]),
                   tuple(tuple(float(value) for value in row) for row in body["heatmap"]))
