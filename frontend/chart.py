"""The ranked bar chart of all eight classes, coloured by risk."""
from __future__ import annotations

import altair as alt
import pandas as pd

from frontend.ranking import Ranking
from frontend.texts import Texts

# Red for malignant, amber for pre-malignant, grey for benign: the colour carries the risk even
# where the legend is off screen.
RISK_COLOURS = {"malignant": "#d62728", "pre-malignant": "#ff9f1c", "benign": "#8c8c8c"}


def ranking_chart(ranking: Ranking, texts: Texts) -> alt.Chart:
    """Horizontal bars, most probable on top; labels carry the percentage, for small screens."""
    rows = pd.DataFrame({
        "label": [f"{texts.name(s.lesion)} {s.probability:.0%}" for s in ranking.scores],
        "probability": [s.probability for s in ranking.scores],
        "risk": [texts.risk_names[s.lesion.risk] for s in ranking.scores],
    })
    risks = alt.Scale(domain=[texts.risk_names[r] for r in RISK_COLOURS],
                      range=list(RISK_COLOURS.values()))
    return alt.Chart(rows, height=alt.Step(28)).mark_bar().encode(
        y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                title=texts.probability_column),
        color=alt.Color("risk:N", scale=risks, legend=alt.Legend(
            orient="bottom", columns=1, title=None)),  # one column: fits a phone
    )
