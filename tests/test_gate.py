"""The gate against a real TorchServe: each refusal from a photo built for it, real lesions accepted,
Prometheus counters by reason, batch isolation, and the shipped gate on non-lesion photos of each
kind, on lesions from each source and on the held-out part of the non-lesion set."""
from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import skimage
import torch
from PIL import Image, ImageFilter
from test_handler import classify, load_service

import settings
from contract.checks import check_prediction
from contract.refusals import ACCEPTED, DETAILS
from handler.checkpoint import METADATA_FILE, load_metadata, save_release
from handler.gate import GATE_FILE
from handler.model import SkinResNet34
from tests.conftest import FIXTURES, TEST_BATCH_SIZE, write_random_release
from tools.archive import build_archive
from training.ood_images import HELD_OUT, drawn, ood_images, shipped_photo

LESION = "MEL_ISIC_0024310.jpg"
SHIPPED_WEIGHTS = settings.WEIGHTS
# The bar the gate is held to on the held-out non-lesion photos; the shipped gate refuses 0.953 of them in
# process (docs/gate_report.json), and the served path must give the same verdicts.
SHIPPED_MIN_REFUSED = 0.95
# One held-out non-lesion photo of each kind (object, scene, document, flat colour), and the check that refuses it. A
# plain card with a phone's sensor noise keeps enough of that noise at a 150x200 frame to pass the focus check,
# whose threshold the upscaled 84x84 lesions set low; the distance refuses it.
NON_LESIONS = {
    "object": (lambda: shipped_photo("motorcycle_left.png"), "not_dermoscopy"),
    "animal": (lambda: shipped_photo("horse.png"), "not_dermoscopy"),
    "scene": (lambda: drawn("scene", 1), "not_dermoscopy"),
    "document": (lambda: shipped_photo("text.png"), "not_dermoscopy"),
    "flat colour": (lambda: drawn("flat", 1), "not_dermoscopy"),
}
# A test-split melanoma from each source of the training data (the HAM10000 one among the fixtures).
SOURCE_LESIONS = {"HAM10000": FIXTURES / "images" / LESION,
                  "BCN20000": FIXTURES / "sources" / "BCN20000_MEL_ISIC_0068381.jpg",
                  "ISIC archive": FIXTURES / "sources" / "ISIC-archive_MEL_ISIC_0014082.jpg"}


def encoded(image: Image.Image, kind: str = "JPEG") -> bytes:
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


def lesion(fixture_images: dict[str, bytes]) -> Image.Image:
    return Image.open(io.BytesIO(fixture_images[LESION])).convert("RGB")


def tiny_png() -> bytes:
    """The 1x1 PNG that used to get a confident class."""
    return encoded(Image.new("RGB", (1, 1), (200, 150, 130)), "PNG")


def darkened(photo: Image.Image) -> bytes:
    """The lesion as a photo without the dermatoscope's light: a seventh of the exposure."""
    return encoded(photo.point(lambda value: value // 7))


def overexposed(photo: Image.Image) -> bytes:
    """The lesion washed out by a flash: 2.5 times the exposure, clipped."""
    return encoded(photo.point(lambda value: min(255, int(value * 2.5))))


def blurred(photo: Image.Image) -> bytes:
    """The lesion far out of focus."""
    return encoded(photo.filter(ImageFilter.GaussianBlur(radius=8)))


BUILT = {"too_small": lambda photo: tiny_png(), "too_dark": darkened, "too_bright": overexposed,
         "blurred": blurred}


def post(torchserve, url: str, body: bytes) -> requests.Response:
    return requests.post(url, data=body, headers=torchserve.headers(), timeout=60)


def gate_counters(torchserve) -> dict[str, float]:
    """SkinGateAccepted and SkinGateRefused per reason, from TorchServe's Prometheus text."""
    text = requests.get(f"{torchserve.url('metrics')}/metrics", timeout=30).text
    counters: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'(SkinGate(?:Accepted|Refused))\{([^}]*)\} (\S+)$', line)
        if match:
            reason = re.search(r'Reason="([^"]+)"', match.group(2))
            key = match.group(1) + (f":{reason.group(1)}" if reason else "")
            counters[key] = counters.get(key, 0.0) + float(match.group(3))
    return counters


@pytest.mark.parametrize("reason", list(BUILT))
def test_a_photo_built_for_a_reason_is_refused_for_it_with_all_eight_classes(torchserve, inference_url,
                                                                             fixture_images, reason):
    answer = post(torchserve, inference_url, BUILT[reason](lesion(fixture_images)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    check_prediction(body)  # the eight classes stay, for ops and research
    gate = body["gate"]
    assert (gate["accepted"], gate["reason"], gate["detail"]) == (False, reason, DETAILS[reason])
    if reason == "too_bright":
        assert gate["score"] > gate["threshold"]
    else:
        assert gate["score"] < gate["threshold"]


def test_every_real_lesion_photo_is_accepted(torchserve, inference_url, fixture_images):
    for name, body in fixture_images.items():
        gate = post(torchserve, inference_url, body).json()["gate"]
        assert gate["accepted"] and gate["reason"] == ACCEPTED, (name, gate)
        assert gate["score"] <= gate["threshold"]


def test_prometheus_counts_accepted_and_refused_answers_by_reason(torchserve, inference_url,
                                                                  fixture_images):
    before = gate_counters(torchserve)
    post(torchserve, inference_url, fixture_images[LESION])
    post(torchserve, inference_url, darkened(lesion(fixture_images)))
    post(torchserve, inference_url, tiny_png())
    after = gate_counters(torchserve)
    for key in ("SkinGateAccepted", "SkinGateRefused:too_dark", "SkinGateRefused:too_small"):
        assert after.get(key, 0) - before.get(key, 0) == 1, (key, before, after)


def test_a_refusal_and_a_bad_image_leave_the_rest_of_the_batch_alone(tmp_path, fixture_images):
    service = load_service(build_archive(weights=write_random_release(tmp_path / "release"),
                                         export_path=tmp_path / "store"), tmp_path / "unpacked")
    photo = lesion(fixture_images)
    responses, statuses = classify(service, [fixture_images[LESION], darkened(photo), b"not an image",
                                             tiny_png()])
    assert statuses == [200, 200, 400, 200]
    assert [responses[i]["gate"]["reason"] for i in (0, 1, 3)] == [ACCEPTED, "too_dark", "too_small"]
    assert responses[2]["error"] == "invalid_image"
    alone, _ = classify(service, [fixture_images[LESION]])
    assert alone[0]["predictions"][0]["code"] == responses[0]["predictions"][0]["code"]


def test_the_archive_refuses_a_gate_fitted_with_other_imagenet_weights(tmp_path):
    weights = write_random_release(tmp_path / "release")
    gate = torch.load(weights.with_name(GATE_FILE), weights_only=True)
    gate["network"]["weights_sha256"] = "0" * 64
    torch.save(gate, weights.with_name(GATE_FILE))
    with pytest.raises(ValueError, match="not what the gate was fitted with"):
        build_archive(weights=weights, export_path=tmp_path / "store")


def test_the_archive_refuses_a_gate_fitted_for_other_weights(tmp_path):
    weights = write_random_release(tmp_path / "release")
    torch.manual_seed(1)
    save_release(SkinResNet34().state_dict(), load_metadata(weights.with_name(METADATA_FILE)),
                 weights.parent)
    with pytest.raises(ValueError, match="fitted for other weights"):
        build_archive(weights=weights, export_path=tmp_path / "store")


def shipped_answers(shipped_server, bodies: list[bytes]) -> list[dict]:
    """The shipped release's answers to ``bodies``, in order, sent a batch at a time as clients under
    load send them."""
    url = f"{shipped_server.url('inference')}/predictions/skin"
    with ThreadPoolExecutor(max_workers=TEST_BATCH_SIZE) as pool:
        answers = list(pool.map(lambda body: post(shipped_server, url, body), bodies))
    assert [answer.status_code for answer in answers] == [200] * len(bodies)
    return [answer.json() for answer in answers]


def test_a_photo_of_something_else_is_refused_as_not_dermoscopy(shipped_server):
    """A well-lit, sharp photo of a person, as a phone might take by mistake, passes every quality
    check and fails the shipped release's out-of-distribution detector, with all eight classes
    still in the answer."""
    [answer] = shipped_answers(shipped_server, [encoded(Image.fromarray(skimage.data.astronaut()))])
    check_prediction(answer)
    gate = answer["gate"]
    assert (gate["accepted"], gate["reason"], gate["detail"]) == (False, "not_dermoscopy",
                                                                 DETAILS["not_dermoscopy"])
    assert gate["score"] > gate["threshold"]


@pytest.mark.parametrize("kind", list(NON_LESIONS))
def test_the_shipped_gate_refuses_a_non_lesion_photo_of_each_kind(shipped_server, kind):
    """A held-out photo of an object, an animal, a scene, a document and a flat colour, each refused
    with the reason that tells the user what to send instead, all eight classes still in the
    answer."""
    photo, reason = NON_LESIONS[kind]
    [answer] = shipped_answers(shipped_server, [encoded(photo(), "PNG")])
    check_prediction(answer)
    gate = answer["gate"]
    assert (gate["accepted"], gate["reason"], gate["detail"]) == (False, reason, DETAILS[reason])


@pytest.mark.parametrize("source", list(SOURCE_LESIONS))
def test_the_shipped_gate_keeps_a_lesion_from_each_source(shipped_server, source):
    [answer] = shipped_answers(shipped_server, [SOURCE_LESIONS[source].read_bytes()])
    gate = answer["gate"]
    assert (gate["accepted"], gate["reason"]) == (True, ACCEPTED), gate
    assert gate["score"] <= gate["threshold"]


def test_the_shipped_gate_refuses_the_held_out_non_lesions_and_keeps_the_lesions(shipped_server,
                                                                                 fixture_images):
    """The committed release with its committed gate, served by a real TorchServe, on the part of
    the non-lesion set that no choice was made on."""
    others = shipped_answers(shipped_server, [encoded(other.image, "PNG")
                                              for other in ood_images(part=HELD_OUT)])
    refused = [not answer["gate"]["accepted"] for answer in others]
    assert sum(refused) / len(refused) >= SHIPPED_MIN_REFUSED
    lesions = shipped_answers(shipped_server, list(fixture_images.values()))
    assert sum(answer["gate"]["accepted"] for answer in lesions) >= len(lesions) - 1
