"""SKIN's answers in the Open Inference Protocol (KServe v2): the request, the response, and back.

A v2 request carries one image, base64, as the only element of ``inputs[0].data`` with datatype
BYTES. A v2 response carries the same answer as the v1 JSON, as named outputs:

- ``codes`` (BYTES, shape [8]): the class codes, most probable first;
- ``probabilities`` (FP32, shape [8]): their probabilities, in the same order;
- one BYTES output of shape [1] per other field of the v1 answer (``referral`` and ``gate``), whose
  only element is that field as JSON text.

The handler builds responses with :func:`response`; clients (the page, the load test, the tests)
build requests with :func:`request` and read responses back into the v1 answer with
:func:`answer_from_response`, so everything that checks a v1 answer checks a v2 one too.
"""
from __future__ import annotations

import base64
import binascii
import json

from contract import answer
from contract.classes import BY_CODE, CODES

INPUT_NAME = "image"
CODES_OUTPUT = "codes"
PROBABILITIES_OUTPUT = "probabilities"
# The v1 answer's fields besides the ranking, each an output of its own.
FIELD_OUTPUTS = ("referral", "gate")
# What a model's metadata (GET /v2/models/<model>, which oip/front.py answers) says it takes and gives.
INPUTS = ({"name": INPUT_NAME, "datatype": "BYTES", "shape": [1]},)
OUTPUTS = ({"name": CODES_OUTPUT, "datatype": "BYTES", "shape": [len(CODES)]},
           {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [len(CODES)]},
           *({"name": name, "datatype": "BYTES", "shape": [1]} for name in FIELD_OUTPUTS))
# v1 fields that become the response's model_name and model_version instead of outputs.
IDENTITY_FIELDS = ("model", "version")
REQUEST_SHAPE = ('{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", '
                 '"data": ["<base64 image>"]}]}')


class V2RequestError(ValueError):
    """A body that is not a v2 request for one image; the message says what to send instead."""


def request(image: bytes, request_id: str | None = None) -> dict:
    """The v2 inference request for one image."""
    body = {"inputs": [{"name": INPUT_NAME, "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(image).decode("ascii")]}]}
    return {"id": request_id, **body} if request_id else body


def read_request(body: object) -> tuple[bytes, str | None]:
    """The image bytes and the request's ``id`` (None when it has none) of one v2 request."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise V2RequestError(f"the body is not JSON; this server speaks the v2 protocol: "
                                 f"POST /v2/models/<model>/infer with {REQUEST_SHAPE}") from None
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise V2RequestError(f"no inputs in the request; send {REQUEST_SHAPE}")
    tensor = body["inputs"][0]
    if not isinstance(tensor, dict) or tensor.get("datatype") != "BYTES":
        raise V2RequestError("inputs[0] must have datatype BYTES and hold the base64 image")
    data = tensor.get("data")
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], str):
        raise V2RequestError("inputs[0].data must hold exactly one element: the whole image as "
                             "one base64 string")
    try:
        image = base64.b64decode(data[0], validate=True)
    except (binascii.Error, ValueError):
        raise V2RequestError("inputs[0].data[0] is not valid base64") from None
    request_id = body.get("id")
    return image, request_id if isinstance(request_id, str) and request_id.strip() else None


def response(answer: dict, request_id: str) -> dict:
    """The v2 response carrying one v1 answer (the handler's ranked classes, referral, gate)."""
    fields = {key: value for key, value in answer.items() if key not in IDENTITY_FIELDS}
    outputs = []
    predictions = fields.pop("predictions", None)
    if predictions is not None:
        outputs += [
            {"name": CODES_OUTPUT, "datatype": "BYTES", "shape": [len(predictions)],
             "data": [p["code"] for p in predictions]},
            {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [len(predictions)],
             "data": [p["probability"] for p in predictions]},
        ]
    outputs += [{"name": name, "datatype": "BYTES", "shape": [1], "data": [json.dumps(value)]}
                for name, value in fields.items()]
    return {"id": request_id, "model_name": answer.get("model"),
            "model_version": answer.get("version"), "outputs": outputs}


def error(detail: str) -> dict:
    """The Open Inference Protocol's error body."""
    return {"error": detail}


def answer_from_response(body: dict) -> dict:
    """The v1 answer that a v2 response carries; raises ValueError when it is not SKIN's."""
    try:
        outputs = {output["name"]: output["data"] for output in body["outputs"]}
        codes, probabilities = outputs.pop(CODES_OUTPUT), outputs.pop(PROBABILITIES_OUTPUT)
        predictions = [answer.scored(BY_CODE[code], float(probability))
                       for code, probability in zip(codes, probabilities, strict=True)]
        fields = {name: json.loads(data[0]) for name, data in outputs.items()}
        return {"model": body["model_name"], "version": body["model_version"], **fields,
                "predictions": predictions}
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"not a SKIN v2 response: {exc!r}: {str(body)[:200]}") from None
