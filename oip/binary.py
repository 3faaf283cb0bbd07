"""The Open Inference Protocol's binary tensor data extension, both ways.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw
tensors of the inputs whose ``parameters.binary_data_size`` says how many bytes each takes, in the
order of the inputs. A BYTES tensor's elements are each a 4-byte little-endian length and that many
bytes. A response carries an output in binary the same way when the request asks for it, for that
output (``outputs[i].parameters.binary_data``) or for all (``parameters.binary_data_output``).
"""
from __future__ import annotations

import base64
import json
import struct

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
SIZE = "binary_data_size"
# Fixed-size datatypes as little-endian numpy types; BYTES is length-prefixed instead.
NUMPY_TYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
               "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
               "FP32": "<f4", "FP64": "<f8"}


class BinaryRequestError(ValueError):
    """A binary request whose sizes or types do not add up; the message says where."""


def read_request(body: bytes, header_length: int) -> dict:
    """The request with every binary input turned into JSON ``data``, as TorchServe takes it."""
    if not 0 < header_length <= len(body):
        raise BinaryRequestError(f"{HEADER_LENGTH} is {header_length}, the body {len(body)} bytes")
    try:
        request = json.loads(body[:header_length])
        inputs = request["inputs"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise BinaryRequestError("the JSON header before the binary data is not a request "
                                 "with inputs") from None
    offset = header_length
    for tensor in inputs:
        size = (tensor.get("parameters") or {}).pop(SIZE, None) if isinstance(tensor, dict) else None
        if size is None:
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise BinaryRequestError(f"input {tensor.get('name')!r}: {SIZE} {size!r} goes past "
                                     "the end of the body")
        tensor["data"] = json_elements(tensor.get("datatype"), body[offset:offset + size])
        offset += size
    if offset != len(body):
        raise BinaryRequestError(f"{len(body) - offset} bytes after the last binary input")
    return request


def json_elements(datatype: str | None, raw: bytes) -> list:
    if datatype == "BYTES":
        # The element is the image's base64, as in JSON; raw image bytes are taken as well (no
        # JPEG, PNG or WebP file is ASCII), since a binary client has no need to encode them.
        return [element.decode("ascii") if element.isascii() else base64.b64encode(element).decode()
                for element in split_bytes(raw)]
    if datatype not in NUMPY_TYPES:
        raise BinaryRequestError(f"datatype {datatype!r} is not one of the protocol's")
    item = np.dtype(NUMPY_TYPES[datatype]).itemsize
    if len(raw) % item:
        raise BinaryRequestError(f"{len(raw)} bytes is no whole number of {datatype} elements")
    return np.frombuffer(raw, NUMPY_TYPES[datatype]).tolist()


def split_bytes(raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BinaryRequestError("a BYTES element's length is cut off")
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            raise BinaryRequestError("a BYTES element is longer than its tensor")
        elements.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    return elements


def raw_elements(datatype: str, data: list) -> bytes:
    if datatype == "BYTES":
        encoded = [str(element).encode() for element in data]
        return b"".join(struct.pack("<I", len(element)) + element for element in encoded)
    return np.asarray(data, NUMPY_TYPES[datatype]).tobytes()


def requested_outputs(request: dict, response: dict) -> tuple[list[dict], set[str]]:
    """The outputs the request asked for (all when it names none), and which of them in binary."""
    parameters = request.get("parameters") or {}
    everything_binary = bool(parameters.get("binary_data_output"))
    asked = {output.get("name"): (output.get("parameters") or {}).get("binary_data", everything_binary)
             for output in request.get("outputs") or []}
    outputs = [output for output in response.get("outputs", []) if not asked or output["name"] in asked]
    binary = {output["name"] for output in outputs
              if asked.get(output["name"], everything_binary)}
    return outputs, binary


def write_response(request: dict, response: dict) -> tuple[bytes, int | None]:
    """The response body for ``request``, and the JSON header's length when any output is binary."""
    outputs, binary = requested_outputs(request, response)
    tails = []
    for output in outputs:
        if output["name"] in binary:
            raw = raw_elements(output["datatype"], output.pop("data"))
            output["parameters"] = {**(output.get("parameters") or {}), SIZE: len(raw)}
            tails.append(raw)
    header = json.dumps({**response, "outputs": outputs}).encode()
    return (header + b"".join(tails), len(header)) if tails else (header, None)
