"""The Open Inference Protocol (KServe v2) on a real TorchServe with service_envelope=kservev2,
serving the same archive as the v1 server: same ranked classes, batching, and 400s for bad bodies."""
from __future__ import annotations

import base64
import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from test_serving import handler_counters

from contract import v2
from contract.checks import check_prediction
from contract.classes import CODES
from frontend.connection import ClientConfig, SkinClient

IMAGE = "MEL_ISIC_0024310.jpg"


def infer(server, body, **kwargs) -> requests.Response:
    """POST a v2 body (a dict is sent as JSON, bytes as they are) to /v2/models/skin/infer."""
    sent = {"json": body} if isinstance(body, dict) else {"data": body}
    headers = {**server.headers(), **kwargs.pop("headers", {})}
    return requests.post(server.inference_url(), headers=headers, timeout=60, **sent, **kwargs)


def v1_answer(torchserve, image: bytes) -> dict:
    answer = requests.post(torchserve.inference_url(), headers=torchserve.headers(), data=image,
                           timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_same_answer(got: dict, expected: dict) -> None:
    assert [p["code"] for p in got["predictions"]] == [p["code"] for p in expected["predictions"]]
    for p, q in zip(got["predictions"], expected["predictions"]):
        assert math.isclose(p["probability"], q["probability"], abs_tol=1e-5)
    assert got["referral"]["refer"] == expected["referral"]["refer"]
    assert math.isclose(got["referral"]["score"], expected["referral"]["score"], abs_tol=1e-5)
    assert got["referral"]["threshold"] == expected["referral"]["threshold"]
    assert (got["model"], got["version"]) == (expected["model"], expected["version"])


def test_v2_response_ranks_the_classes_as_the_v1_answer_does(torchserve, torchserve_v2,
                                                              fixture_images):
    image = fixture_images[IMAGE]
    answer = infer(torchserve_v2, v2.request(image, request_id="lesion-42"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "lesion-42" and body["model_name"] == "skin" and body["model_version"]
    outputs = {output["name"]: output for output in body["outputs"]}
    assert set(outputs) == {"codes", "probabilities", "referral", "gate"}
    assert outputs["codes"]["datatype"] == "BYTES" and outputs["codes"]["shape"] == [8]
    assert sorted(outputs["codes"]["data"]) == sorted(CODES)
    assert outputs["probabilities"]["datatype"] == "FP32" and outputs["probabilities"]["shape"] == [8]
    assert outputs["referral"]["shape"] == [1]
    assert set(json.loads(outputs["referral"]["data"][0])) == {"refer", "score", "threshold"}
    assert outputs["gate"]["datatype"] == "BYTES" and outputs["gate"]["shape"] == [1]
    assert set(json.loads(outputs["gate"]["data"][0])) == {"accepted", "reason", "detail", "score", "threshold"}
    read_back = v2.answer_from_response(body)
    check_prediction(read_back)
    assert_same_answer(read_back, v1_answer(torchserve, image))


def test_every_fixture_gets_the_v1_ranking(torchserve, torchserve_v2, fixture_images):
    for name, image in fixture_images.items():
        answer = infer(torchserve_v2, v2.request(image))
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json()["id"], "a request without id gets TorchServe's request id"
        assert_same_answer(v2.answer_from_response(answer.json()), v1_answer(torchserve, image))


def test_concurrent_v2_requests_are_batched_and_each_gets_its_own_answer(torchserve_v2,
                                                                         fixture_images):
    images = list(fixture_images.values())
    alone = [v2.answer_from_response(infer(torchserve_v2, v2.request(image)).json())
             for image in images]
    before = handler_counters(torchserve_v2)
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        together = list(pool.map(
            lambda pair: infer(torchserve_v2, v2.request(pair[1], request_id=f"r{pair[0]}")),
            enumerate(images * 2)))
    assert [a.status_code for a in together] == [200] * len(together), [a.text for a in together]
    for idx, (expected, answer) in enumerate(zip(alone * 2, together)):
        assert answer.json()["id"] == f"r{idx}"
        assert_same_answer(v2.answer_from_response(answer.json()), expected)
    after = handler_counters(torchserve_v2)
    batches = after["SkinBatchesRun"] - before["SkinBatchesRun"]
    assert after["SkinImagesHandled"] - before["SkinImagesHandled"] == len(together)
    assert batches < len(together), "the concurrent v2 requests were never batched together"


def one_input(**fields) -> dict:
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", **fields}]}


@pytest.mark.parametrize("name,body,detail", [
    ("no inputs", {"id": "x"}, "no inputs"),
    ("empty inputs", {"inputs": []}, "no inputs"),
    ("bad base64", one_input(data=["this is not base64!"]), "not valid base64"),
    ("not JSON", b"{inputs: oops", "not JSON"),
    ("not a BYTES input", one_input(datatype="FP32", data=[0.5]), "datatype BYTES"),
    ("image split over elements", one_input(data=["/9j/", "4AAQ"]), "exactly one element"),
    ("base64 of text", one_input(data=[base64.b64encode(b"patient notes").decode()]), "not an image"),
])
def test_bad_v2_body_gets_400_with_a_message(torchserve_v2, fixture_images, name, body, detail):
    answer = infer(torchserve_v2, body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, (name, answer.status_code, answer.text)
    assert detail in answer.json()["error"], (name, answer.text)
    assert infer(torchserve_v2, v2.request(fixture_images[IMAGE])).status_code == 200


def test_one_bad_v2_body_inside_a_batch_fails_alone(torchserve_v2, fixture_images):
    good = [v2.request(image) for image in list(fixture_images.values())[:3]]
    bodies = [good[0], {"inputs": "none"}, good[1], good[2]]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        answers = list(pool.map(lambda body: infer(torchserve_v2, body), bodies))
    assert [a.status_code for a in answers] == [200, 400, 200, 200], [a.text for a in answers]
    assert "no inputs" in answers[1].json()["error"]


def test_a_v1_request_to_the_v2_server_is_told_what_to_send(torchserve_v2, fixture_images):
    answer = requests.post(f"{torchserve_v2.url('inference')}/predictions/skin",
                           headers={**torchserve_v2.headers(), "Content-Type": "image/jpeg"},
                           data=fixture_images[IMAGE], timeout=60)
    assert answer.status_code == 400
    assert "v2 protocol" in answer.json()["error"]


def test_customized_metadata_passes_the_v2_envelope_unchanged(torchserve_v2):
    answer = requests.get(f"{torchserve_v2.url('management')}/models/skin?customized=true",
                          headers=torchserve_v2.headers("management"), timeout=30)
    assert answer.status_code == 200, answer.text
    assert [c["code"] for c in answer.json()[0]["customizedMetadata"]["classes"]] == list(CODES)


def test_the_page_client_gets_the_same_ranking_over_either_protocol(torchserve, torchserve_v2,
                                                                     fixture_images):
    def ranking(server, protocol: str):
        config = ClientConfig(url=server.inference_url(), key_file=server.key_file, protocol=protocol)
        return SkinClient(config).classify(fixture_images[IMAGE])

    over_v1, over_v2 = ranking(torchserve, "v1"), ranking(torchserve_v2, "v2")
    assert [s.lesion.code for s in over_v2.scores] == [s.lesion.code for s in over_v1.scores]
    assert over_v2.referral_threshold == over_v1.referral_threshold
    assert over_v2.version == over_v1.version
