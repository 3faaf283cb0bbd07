"""Take over TorchServe 0.12's kservev2 request envelope, so that v2 requests batch and fail alone.

With ``service_envelope=kservev2`` every batch passes through ``KServev2Envelope``, which reads only
the first request of a batch and answers the whole batch with one response (TorchServe then fails
every request in it with 503 "number of batch response mismatched"), and turns a body without
``inputs`` or one that is not JSON into a 503 for the whole batch. :func:`take_over` replaces the
envelope's two translation steps: each request's v2 body becomes an ordinary v1 row for the handler
(its image bytes, or the reason it has none, which the handler answers with 400 on its own), and
each answer, or error, becomes that request's own v2 response.
"""
from __future__ import annotations

from ts.torch_handler.request_envelope.kservev2 import KServev2Envelope

from contract import v2
from handler.batch import REQUEST_ERROR


def take_over() -> None:
    """Install SKIN's translation on the envelope class; the envelope looks both up per batch."""
    KServev2Envelope.parse_input = _rows_from_v2
    KServev2Envelope.format_output = _v2_from_answers


def _rows_from_v2(envelope: KServev2Envelope, rows: list[dict]) -> list[dict]:
    request_ids, handler_rows = [], []
    for idx, row in enumerate(rows):
        request_id = envelope.context.get_request_id(idx)
        body = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
        try:
            image, given_id = v2.read_request(body)
        except v2.V2RequestError as exc:
            handler_rows.append({REQUEST_ERROR: str(exc)})
        else:
            handler_rows.append({"body": image})
            request_id = given_id or request_id
        request_ids.append(request_id)
    envelope.skin_request_ids = request_ids
    return handler_rows


def _v2_from_answers(envelope: KServev2Envelope, answers: list) -> list:
    # Describe requests (GET /models/skin?customized=true) pass through the envelope too.
    if envelope.context.get_request_header(0, "describe") == "True":
        return answers
    request_ids = getattr(envelope, "skin_request_ids", [])
    return [v2.error(str(answer.get("detail", answer["error"]))) if "error" in answer
            else v2.response(answer, request_id)
            for answer, request_id in zip(answers, request_ids, strict=True)]
