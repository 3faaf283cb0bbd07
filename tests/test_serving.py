"""A real TorchServe serving the real handler: request shapes, batching, bad input, auth, metrics."""
from __future__ import annotations

import base64
import math
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import settings
from contract.checks import check_prediction
from contract.classes import CODES
from serve.torchserve import read_properties


def assert_ranked(body: dict) -> list[str]:
    check_prediction(body)  # all eight classes, ranked, probabilities summing to 1
    assert body["model"] == "skin" and body["version"]
    return [p["code"] for p in body["predictions"]]


def post(url: str, headers: dict, **kwargs) -> requests.Response:
    return requests.post(url, headers=headers, timeout=60, **kwargs)


def handler_counters(torchserve) -> dict[str, float]:
    text = requests.get(f"{torchserve.url('metrics')}/metrics", timeout=30).text
    return {name: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith(name + "{"))
            for name in ("SkinImagesHandled", "SkinBatchesRun")}


@pytest.fixture
def auth(torchserve) -> dict:
    return torchserve.headers("inference")


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A valid 30000x30000 greyscale PNG (900 megapixels), built row by row in under 1 MB."""
    side = 30000
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_raw_multipart_and_base64_requests(inference_url, auth, fixture_images):
    image = fixture_images["NV_ISIC_0024306.jpg"]
    answers = [
        post(inference_url, auth, data=image),
        post(inference_url, auth, files={"data": ("lesion.jpg", image, "image/jpeg")}),
        post(inference_url, auth, files={"file": ("lesion.jpg", image, "image/jpeg")}),
        post(inference_url, auth, json={"data": base64.b64encode(image).decode()}),
    ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    rankings = [assert_ranked(a.json()) for a in answers]
    assert all(ranking == rankings[0] for ranking in rankings)


def test_concurrent_clients_each_get_their_own_images_result(torchserve, inference_url, auth,
                                                              fixture_images):
    images = list(fixture_images.values())
    alone = [post(inference_url, auth, data=image).json() for image in images]
    before = handler_counters(torchserve)
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        together = list(pool.map(lambda image: post(inference_url, auth, data=image), images * 2))
    assert all(answer.status_code == 200 for answer in together)
    for expected, answer in zip(alone * 2, together):
        got = answer.json()["predictions"]
        assert [p["code"] for p in got] == [p["code"] for p in expected["predictions"]]
        for p, q in zip(got, expected["predictions"]):
            assert math.isclose(p["probability"], q["probability"], abs_tol=1e-4)
    after = handler_counters(torchserve)
    images_handled = after["SkinImagesHandled"] - before["SkinImagesHandled"]
    batches = after["SkinBatchesRun"] - before["SkinBatchesRun"]
    assert images_handled == 2 * len(images)
    assert batches < images_handled, "the concurrent requests were never batched together"


@pytest.mark.parametrize("name,body,content_type,detail", [
    ("text file", b"Patient notes: lesion on left arm.\n", "text/plain", "text"),
    ("empty body", b"", "application/octet-stream", "empty"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "application/pdf", "not an image"),
])
def test_bad_input_gets_400_with_a_message(inference_url, auth, fixture_images, name, body,
                                           content_type, detail):
    answer = post(inference_url, {**auth, "Content-Type": content_type}, data=body)
    assert answer.status_code == 400, (name, answer.status_code, answer.text)
    assert answer.json()["error"] == "invalid_image" and detail in answer.json()["detail"]
    assert post(inference_url, auth, data=fixture_images["MEL_ISIC_0024310.jpg"]).status_code == 200


def test_truncated_jpeg_gets_400(inference_url, auth, fixture_images):
    image = fixture_images["BKL_ISIC_0024312.jpg"]
    answer = post(inference_url, auth, data=image[: len(image) // 3])
    assert answer.status_code == 400 and "could not be decoded" in answer.json()["detail"]
    assert post(inference_url, auth, data=image).status_code == 200


def test_decompression_bomb_gets_400(inference_url, auth, huge_png, fixture_images):
    answer = post(inference_url, auth, data=huge_png)
    assert answer.status_code == 400, answer.text
    assert "900000000 pixels" in answer.json()["detail"]
    assert post(inference_url, auth, data=fixture_images["DF_ISIC_0024318.jpg"]).status_code == 200


def test_body_over_the_size_limit_gets_413_and_a_phone_photo_fits(inference_url, auth, fixture_images):
    limit = int(read_properties(settings.TORCHSERVE_CONFIG)["max_request_size"])
    assert limit >= 12_000_000, "a 12 MB phone photo must fit"
    answer = post(inference_url, auth, data=b"\xff" * (limit + 1024))
    assert answer.status_code == 413
    assert post(inference_url, auth, data=fixture_images["VASC_ISIC_0024370.jpg"]).status_code == 200


def test_one_bad_image_inside_a_batch_of_good_ones(inference_url, auth, fixture_images):
    good = list(fixture_images.values())[:3]
    bodies = [good[0], b"definitely not a jpeg", good[1], good[2]]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        answers = list(pool.map(lambda body: post(inference_url, auth, data=body), bodies))
    assert [a.status_code for a in answers] == [200, 400, 200, 200]
    assert "not an image" in answers[1].json()["detail"]


def png_strip(size: tuple[int, int]) -> bytes:
    """A valid RGB PNG of one colour, a few hundred bytes whatever its size: 1,000,000 x 1 is 1 kB."""
    width, height = size
    row = b"\x00" + b"\x80" * (3 * width)
    idat = zlib.compress(row * height, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_hostile_strips_among_good_photos_fail_alone(inference_url, auth, fixture_images):
    good = list(fixture_images.values())[:5]
    alone = [post(inference_url, auth, data=image).json() for image in good]
    strips = [png_strip(size) for size in [(1_000_000, 1), (1, 100_000), (100_000, 1)]]
    # Interleaved and sent at once, so that the server's batches of 4 mix strips and photos.
    bodies = [good[0], strips[0], good[1], good[2], strips[1], good[3], strips[2], good[4]]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        answers = list(pool.map(lambda body: post(inference_url, auth, data=body), bodies))
    strip_answers = [answers[i] for i in (1, 4, 6)]
    assert [a.status_code for a in strip_answers] == [400] * 3, [a.text for a in strip_answers]
    assert all("a strip rather than a photo" in a.json()["detail"] for a in strip_answers)
    photo_answers = [answers[i] for i in (0, 2, 3, 5, 7)]
    assert [a.status_code for a in photo_answers] == [200] * 5, [a.text for a in photo_answers]
    for expected, answer in zip(alone, photo_answers):
        assert assert_ranked(answer.json()) == [p["code"] for p in expected["predictions"]]


def test_no_token_or_a_wrong_token_is_refused(torchserve, inference_url, fixture_images):
    # TorchServe 0.12 answers a failed token check with 400 InvalidKeyException, not 401.
    def refused(answer: requests.Response) -> bool:
        return answer.status_code == 400 and answer.json()["type"] == "InvalidKeyException"

    image = fixture_images["NV_ISIC_0024306.jpg"]
    wrong = {"Authorization": "Bearer not-the-key"}
    management = f"{torchserve.url('management')}/models/skin"
    assert refused(requests.post(inference_url, data=image, timeout=30))
    assert refused(requests.post(inference_url, data=image, headers=wrong, timeout=30))
    assert refused(requests.get(management, timeout=30))
    assert refused(requests.get(management, headers=torchserve.headers("inference"), timeout=30))
    assert requests.post(inference_url, data=image, headers=torchserve.headers(), timeout=30).ok


def test_describe_and_customized_metadata(torchserve):
    url = f"{torchserve.url('management')}/models/skin"
    described = requests.get(url, headers=torchserve.headers("management"), timeout=30).json()[0]
    assert described["batchSize"] == 4 and described["workers"][0]["status"] == "READY"
    custom = requests.get(f"{url}?customized=true", headers=torchserve.headers("management"),
                          timeout=30).json()[0]["customizedMetadata"]
    assert [c["code"] for c in custom["classes"]] == list(CODES)
    assert custom["version"] == described["modelVersion"]


def test_scale_to_two_workers_and_back(torchserve, inference_url, auth, fixture_images):
    url = f"{torchserve.url('management')}/models/skin"
    management = torchserve.headers("management")

    def scale(workers: int) -> list[dict]:
        answer = requests.put(f"{url}?min_worker={workers}&max_worker={workers}&synchronous=true",
                              headers=management, timeout=120)
        assert answer.status_code == 200, answer.text
        return requests.get(url, headers=management, timeout=30).json()[0]["workers"]

    try:
        workers = scale(2)
        assert [w["status"] for w in workers] == ["READY", "READY"]
        assert post(inference_url, auth, data=fixture_images["SCC_ISIC_0024329.jpg"]).status_code == 200
    finally:
        workers = scale(1)
    assert len(workers) == 1


def test_prometheus_metrics_include_requests_and_handler_metrics(torchserve, inference_url, auth,
                                                                 fixture_images):
    assert post(inference_url, auth, data=fixture_images["AK_ISIC_0024468.jpg"]).status_code == 200
    text = requests.get(f"{torchserve.url('metrics')}/metrics", timeout=30).text
    assert "ts_inference_requests_total" in text
    for metric in ("SkinImagesHandled", "SkinBatchesRun", "SkinBatchSize", "SkinDecodeMs", "SkinFrameMs",
                   "SkinForwardMs", "SkinGateNetworkMs", "SkinGateChecksMs", "SkinAnswerMs"):
        assert f'{metric}{{ModelName="skin"' in text, metric
