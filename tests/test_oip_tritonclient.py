"""The v2 protocol as a real client sees it: NVIDIA's tritonclient against `SKIN_PROTOCOL=v2`'s
TorchServe behind its front (oip/): health, server and model metadata, model readiness, and infer
with JSON and with binary tensors, each answer the v1 server's ranking."""
from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from contract import v2
from contract.classes import CODES

IMAGE = "MEL_ISIC_0024310.jpg"


@pytest.fixture(scope="module")
def client(torchserve_v2) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=torchserve_v2.url("front").removeprefix("http://"),
                                        network_timeout=60, connection_timeout=10)


@pytest.fixture(scope="module")
def expected(torchserve, fixture_images) -> dict:
    answer = requests.post(torchserve.inference_url(), data=fixture_images[IMAGE],
                           headers=torchserve.headers(), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def image_input(element: bytes, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(v2.INPUT_NAME, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([element], dtype=np.object_), binary_data=binary)
    return tensor


def assert_ranked_as(result: triton.InferResult, expected: dict) -> None:
    codes = [code.decode() if isinstance(code, bytes) else code for code in result.as_numpy("codes")]
    assert codes == [p["code"] for p in expected["predictions"]]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(CODES),)
    for got, want in zip(probabilities, expected["predictions"]):
        assert math.isclose(float(got), want["probability"], abs_tol=1e-5)
    referral = result.as_numpy("referral")[0]
    assert json.loads(referral) == expected["referral"]


def test_health_and_readiness(client, torchserve_v2):
    headers = torchserve_v2.headers()
    assert client.is_server_live(headers=headers)
    assert client.is_server_ready(headers=headers)
    assert client.is_model_ready("skin", headers=headers)
    assert not client.is_model_ready("no-such-model", headers=headers)


def test_server_and_model_metadata(client, torchserve_v2, expected):
    headers = torchserve_v2.headers()
    server = client.get_server_metadata(headers=headers)
    assert server["name"] and server["version"] and "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata("skin", headers=headers)
    assert model["name"] == "skin" and expected["version"] in model["versions"]
    assert model["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [1]}]
    assert [output["name"] for output in model["outputs"]] == ["codes", "probabilities", "referral", "gate"]
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("no-such-model", headers=headers)


def test_infer_with_json_tensors(client, torchserve_v2, fixture_images, expected):
    encoded = base64.b64encode(fixture_images[IMAGE])
    outputs = [triton.InferRequestedOutput(output["name"], binary_data=False) for output in v2.OUTPUTS]
    result = client.infer("skin", [image_input(encoded, binary=False)], outputs=outputs,
                          request_id="lesion-7", headers=torchserve_v2.headers())
    assert result.get_response()["id"] == "lesion-7"
    assert all("data" in output for output in result.get_response()["outputs"])
    assert_ranked_as(result, expected)


@pytest.mark.parametrize("element", ["raw", "base64"])
def test_infer_with_binary_tensors(client, torchserve_v2, fixture_images, expected, element):
    image = fixture_images[IMAGE]
    sent = image if element == "raw" else base64.b64encode(image)
    # No outputs named: tritonclient asks for all of them in binary.
    result = client.infer("skin", [image_input(sent, binary=True)], headers=torchserve_v2.headers())
    assert all("binary_data_size" in output["parameters"] for output in result.get_response()["outputs"])
    assert_ranked_as(result, expected)


def test_only_the_requested_outputs_come_back(client, torchserve_v2, fixture_images):
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=True)]
    result = client.infer("skin", [image_input(fixture_images[IMAGE], binary=True)], outputs=outputs,
                          headers=torchserve_v2.headers())
    assert [output["name"] for output in result.get_response()["outputs"]] == ["probabilities"]
    assert math.isclose(float(result.as_numpy("probabilities").sum()), 1.0, abs_tol=1e-4)


def test_every_route_wants_the_inference_key(client, torchserve_v2, fixture_images):
    assert not client.is_server_live()
    assert not client.is_model_ready("skin", headers={"Authorization": "Bearer wrong"})
    with pytest.raises(InferenceServerException, match="Token Authorization failed"):
        client.infer("skin", [image_input(fixture_images[IMAGE], binary=True)])


def test_the_front_refuses_multipart_and_passes_raw_and_json_bodies(torchserve_v2, fixture_images):
    """Multipart is turned off at the front, ahead of TorchServe's Netty decoder; the protocol's
    own bodies, JSON and binary (raw bytes after a JSON header), pass."""
    url, headers = torchserve_v2.inference_url(), torchserve_v2.headers()
    multipart = requests.post(url, files={"data": ("a.jpg", fixture_images[IMAGE])}, headers=headers,
                              timeout=60)
    assert multipart.status_code == 415 and "binary tensor data" in multipart.json()["error"]
    assert requests.post(url, json=v2.request(fixture_images[IMAGE]), headers=headers,
                         timeout=60).status_code == 200
    header = (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", '
              b'"parameters": {"binary_data_size": %d}}]}')
    image = fixture_images[IMAGE]
    tensor = len(image).to_bytes(4, "little") + image
    head = header % len(tensor)
    raw = requests.post(url, data=head + tensor, timeout=60,
                        headers={**headers, "Inference-Header-Content-Length": str(len(head)),
                                 "Content-Type": "application/octet-stream"})
    assert raw.status_code == 200, raw.text
    assert v2.answer_from_response(raw.json())["model"] == "skin"


@pytest.mark.parametrize("body,length,detail", [
    (b'{"inputs": []}', 99, "Inference-Header-Content-Length is 99"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], '
     b'"parameters": {"binary_data_size": 50}}]}', None, "past the end"),
])
def test_a_broken_binary_request_gets_400(torchserve_v2, body, length, detail):
    answer = requests.post(torchserve_v2.inference_url(), data=body + b"\x00" * 8, timeout=60,
                           headers={**torchserve_v2.headers(),
                                    "Inference-Header-Content-Length": str(length or len(body))})
    assert answer.status_code == 400 and detail in answer.json()["error"], answer.text
