"""A TorchServe explanation as the page draws it: the class explained, and its heatmap over the frame
the model saw."""
from __future__ import annotations

from dataclasses import dataclass

from contract.classes import BY_CODE, LesionClass


@dataclass(frozen=True)
class Explanation:
    lesion: LesionClass
    probability: float
    frame: tuple[int, int]  # (height, width) of the model's input, framed as handler/preprocessing.py does
    heatmap: tuple[tuple[float, ...], ...]  # rows over that frame, top first; values on [0, 1]

    @classmethod
    def from_response(cls, body: dict) -> "Explanation":
        """Parse the handler's 200 body from /explanations; raises ValueError when it is not one."""
        try:
            lesion = BY_CODE[body["class"]["code"]]
            probability = float(body["class"]["probability"])
            frame = int(body["frame"]["height"]), int(body["frame"]["width"])
            heatmap = tuple(tuple(float(value) for value in row) for row in body["heatmap"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unexpected explanation from the model server: {exc!r}") from None
        if not heatmap or len({len(row) for row in heatmap}) != 1 or not heatmap[0]:
            raise ValueError("the model server's heatmap is not a rectangular grid")
        if not all(0 <= value <= 1 for row in heatmap for value in row):
            raise ValueError("the model server's heatmap has values outside [0, 1]")
        return cls(lesion, probability, frame, heatmap)
