"""The wire contract on its own: what the serialiser builds, the validator passes, in v1 and through
the v2 codec; and what breaks the contract is refused with the reason."""
from __future__ import annotations

import pytest

from contract import answer, v2
from contract.checks import check_explanation, check_gate, check_prediction
from contract.classes import CLASSES, CODES
from contract.refusals import ACCEPTED, ACCEPTED_DETAIL, DETAILS

PROBABILITIES = [0.05, 0.1, 0.05, 0.02, 0.3, 0.4, 0.03, 0.05]  # in classes.json's order


def built_prediction(gate: dict | None = None) -> dict:
    """A fresh answer, which a test may change: accepted unless ``gate`` says otherwise."""
    return answer.prediction("skin", "2.0", PROBABILITIES, 0.35,
                             gate or answer.gate_verdict(True, ACCEPTED, ACCEPTED_DETAIL, 0.2, 0.5))


def test_a_built_prediction_is_ranked_flagged_and_passes_the_check():
    body = built_prediction()
    check_prediction(body)
    assert [p["probability"] for p in body["predictions"]] == sorted(PROBABILITIES, reverse=True)
    assert body["predictions"][0]["code"] == CODES[PROBABILITIES.index(max(PROBABILITIES))]
    concern = sum(p for p, c in zip(PROBABILITIES, CLASSES) if c.is_concerning)
    assert body["referral"] == {"refer": concern >= 0.35, "score": concern, "threshold": 0.35}


@pytest.mark.parametrize("reason", list(DETAILS))
def test_every_refusal_passes_the_check(reason):
    score = None if reason == "gate_error" else 3.0
    check_prediction(built_prediction(answer.gate_verdict(False, reason, DETAILS[reason], score, None)))


def test_a_prediction_survives_the_v2_codec():
    body = built_prediction()
    read_back = v2.answer_from_response(v2.response(body, "request-1"))
    check_prediction(read_back)
    assert read_back == body


@pytest.mark.parametrize("change, reason", [
    (lambda body: body.pop("version"), "no version"),
    (lambda body: body["predictions"].pop(), "classes differ"),
    (lambda body: body["predictions"].reverse(), "not ranked"),
    (lambda body: body["predictions"][0].update(probability="0.4"), "not numbers"),
    (lambda body: body["predictions"][0].update(probability=0.9), "sum to"),
    (lambda body: body["referral"].update(threshold=1.5), "referral threshold"),
    (lambda body: body.pop("gate"), "no gate verdict"),
    (lambda body: body["gate"].update(reason="too_blue"), "unknown gate reason"),
    (lambda body: body["gate"].update(accepted=False), "inconsistent gate verdict"),
    (lambda body: body["gate"].update(detail=""), "no detail"),
    (lambda body: body["gate"].update(score=None), "no numeric score"),
])
def test_a_prediction_that_breaks_the_contract_is_refused_with_the_reason(change, reason):
    body = built_prediction()
    change(body)
    with pytest.raises(ValueError, match=reason):
        check_prediction(body)


def test_check_gate_refuses_what_is_no_verdict():
    for gate in (None, [], {"accepted": "yes", "reason": ACCEPTED}):
        with pytest.raises(ValueError, match="no gate verdict"):
            check_gate(gate)


def test_a_built_explanation_is_rounded_and_passes_the_check():
    body = answer.explanation("skin", "2.0", (2, 3), [[0.12345, 1.0, 0.0], [0.5, 0.25, 0.75]],
                              CODES.index("MEL"), 0.6, requested=True)
    check_explanation(body)
    assert body["class"]["code"] == "MEL" and body["class"]["requested"] is True
    assert body["heatmap"][0][0] == 0.123 and body["frame"] == {"height": 2, "width": 3}


@pytest.mark.parametrize("change, reason", [
    (lambda body: body["class"].update(code="MELANOMA"), "no class"),
    (lambda body: body["frame"].update(height="2"), "no frame"),
    (lambda body: body["heatmap"].append([0.5]), "rectangular"),
    (lambda body: body["heatmap"][0].__setitem__(0, 1.5), "outside"),
])
def test_an_explanation_that_breaks_the_contract_is_refused(change, reason):
    body = answer.explanation("skin", "2.0", (2, 2), [[0.0, 0.5], [1.0, 0.25]], 0, 0.4, False)
    change(body)
    with pytest.raises(ValueError, match=reason):
        check_explanation(body)


def test_an_error_answer_carries_its_code_and_reason():
    assert answer.error(answer.INVALID_IMAGE, "the body is empty") == {
        "error": "invalid_image", "detail": "the body is empty"}
