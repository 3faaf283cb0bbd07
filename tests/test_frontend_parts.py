"""The page's parts on their own: photo shrinking, the ranking and its flag, the client's key
handling against the real TorchServe, and the HTTPS certificate with a real Streamlit."""
from __future__ import annotations

import io
import json
import subprocess

import pytest
import requests
from PIL import ExifTags, Image

import settings
from contract.classes import CLASSES
from frontend.connection import ClientConfig, Problem, ServerProblem, SkinClient
from frontend.photo import LONG_SIDE, prepare_photo
from frontend.ranking import Ranking
from imaging.decode import InvalidImageError
from serve.certificate import ensure_certificate
from serve.launcher import wait_for_page
from serve.page import page_address, page_environment, streamlit_command
from serve.processes import stop_process
from serve.torchserve import free_port, read_key, read_properties


def jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, (200, 120, 90))
    image.paste((20, 20, 20), (0, 0, size[0] // 4, size[1] // 4))  # a dark corner shows rotation
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_large_photo_goes_up_small_and_upright():
    original = jpeg((4000, 3000), orientation=6)  # a phone held upright: pixels stored sideways
    photo = prepare_photo(original)
    shrunk = Image.open(io.BytesIO(photo.body))
    assert shrunk.size == (LONG_SIDE * 3 // 4, LONG_SIDE)
    assert shrunk.getpixel((shrunk.width - 5, 5))[0] < 60  # orientation 6: dark corner top-right
    assert len(photo.body) < len(original) / 4


def test_small_photo_keeps_its_size():
    shrunk = Image.open(io.BytesIO(prepare_photo(jpeg((600, 450))).body))
    assert shrunk.size == (600, 450) and shrunk.format == "JPEG"


def test_what_the_page_cannot_read_is_refused_with_the_reason_and_not_sent():
    with pytest.raises(InvalidImageError, match="not an image in an accepted format"):
        prepare_photo(b"not an image at all")
    with pytest.raises(InvalidImageError, match="a strip rather than a photo"):
        prepare_photo(encoded(Image.new("RGB", (2000, 100)), "PNG"))


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def with_location() -> Image.Exif:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "N", (48.0, 12.0, 30.0)
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = "E", (16.0, 22.0, 10.0)
    return exif


def grey_palette() -> Image.Image:
    image = Image.new("P", (64, 48), 1)
    image.putpalette([0, 0, 0, 128, 128, 128] + [0, 0, 0] * 254)
    return image


@pytest.mark.parametrize("name,original,expected", [
    ("transparent RGBA", encoded(Image.new("RGBA", (64, 48), (10, 20, 30, 0)), "PNG", exif=with_location()),
     (255, 255, 255)),
    ("palette", encoded(grey_palette(), "PNG"), (128, 128, 128)),
    ("16-bit grey", encoded(Image.new("I;16", (64, 48), 128 * 256), "PNG"), (128, 128, 128)),
    ("JPEG with GPS", encoded(Image.new("RGB", (64, 48), (128, 128, 128)), "JPEG", exif=with_location(),
                              icc_profile=b"\0" * 128), (128, 128, 128)),
    ("PNG with GPS", encoded(Image.new("RGB", (64, 48), (128, 128, 128)), "PNG", exif=with_location()),
     (128, 128, 128)),
])
def test_every_photo_goes_up_as_its_rgb_pixels_alone(name, original, expected):
    sent = Image.open(io.BytesIO(prepare_photo(original).body))
    assert (sent.format, sent.mode, sent.size) == ("JPEG", "RGB", (64, 48)), name
    assert all(abs(a - b) <= 3 for a, b in zip(sent.getpixel((32, 24)), expected)), (name, sent.getpixel((32, 24)))
    assert not sent.getexif() and not set(sent.info) & {"exif", "icc_profile", "xmp"}, (name, sent.info)


def test_a_location_in_the_original_is_what_the_test_removes():
    original = encoded(Image.new("RGB", (64, 48)), "JPEG", exif=with_location())
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)


THRESHOLD = 0.3  # stands for the release's, which the answer carries


ACCEPTED_GATE = {"accepted": True, "reason": "accepted", "detail": "passed", "score": 1.0, "threshold": 2.0}


def ranking_body(probabilities: dict[str, float], gate: dict = ACCEPTED_GATE) -> dict:
    """An answer as the server ranks it, most probable first."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
    return {"model": "skin", "version": "9.9", "referral": {"threshold": THRESHOLD}, "gate": gate,
            "predictions": [{"code": code, "probability": p} for code, p in ranked]}


def spread(concerning: float) -> dict[str, float]:
    """Probabilities that give the four concerning classes ``concerning`` in total."""
    flagged = [c.code for c in CLASSES if c.is_concerning]
    benign = [c.code for c in CLASSES if not c.is_concerning]
    return {**{code: concerning / len(flagged) for code in flagged},
            **{code: (1 - concerning) / len(benign) for code in benign}}


@pytest.mark.parametrize("concerning, flagged", [
    (THRESHOLD, True), (THRESHOLD - 0.01, False), (0.9, True), (0.0, False)])
def test_flag_fires_on_the_concerning_classes_together(concerning, flagged):
    ranking = Ranking.from_response(ranking_body(spread(concerning)))
    assert ranking.flagged is flagged
    assert ranking.concerning_probability == pytest.approx(concerning)


def test_ranking_is_read_in_order_and_checked_against_classes_json():
    probabilities = {c.code: (i + 1) / 36 for i, c in enumerate(CLASSES)}
    ranking = Ranking.from_response(ranking_body(probabilities))
    assert [s.lesion.code for s in ranking.scores] == [c.code for c in reversed(CLASSES)]
    assert ranking.top.lesion is CLASSES[-1]
    unranked = ranking_body(probabilities)
    unranked["predictions"].reverse()
    with pytest.raises(ValueError, match="not ranked"):
        Ranking.from_response(unranked)
    del probabilities[CLASSES[0].code]
    with pytest.raises(ValueError, match="classes differ"):
        Ranking.from_response(ranking_body(probabilities))


def test_a_refusal_is_read_and_an_inconsistent_verdict_rejected():
    probabilities = {c.code: 1 / len(CLASSES) for c in CLASSES}
    refusal = {"accepted": False, "reason": "blurred", "detail": "The photo is blurred.", "score": 3.0,
               "threshold": 9.0}
    gate = Ranking.from_response(ranking_body(probabilities, refusal)).gate
    assert (gate.accepted, gate.reason, gate.detail) == (False, "blurred", "The photo is blurred.")
    with pytest.raises(ValueError, match="inconsistent gate verdict"):
        Ranking.from_response(ranking_body(probabilities, refusal | {"accepted": True}))
    with pytest.raises(ValueError, match="no gate verdict"):
        Ranking.from_response({k: v for k, v in ranking_body(probabilities).items() if k != "gate"})


def test_config_from_environment():
    assert ClientConfig.from_env({}) == ClientConfig()
    assert ClientConfig().key_file == settings.REPO / ".run" / "serve" / "page_key.json"  # the inference key alone
    config = ClientConfig.from_env({"SKIN_INFERENCE_URL": "http://h:1/p",
                                    "SKIN_KEY_FILE": "/k.json", "SKIN_TOKEN": "t"})
    assert (config.url, str(config.key_file), config.token) == ("http://h:1/p", "/k.json", "t")


def test_config_for_the_v2_protocol_defaults_to_its_endpoint():
    config = ClientConfig.from_env({"SKIN_PROTOCOL": "v2"})
    assert (config.protocol, config.url) == ("v2", "http://127.0.0.1:8080/v2/models/skin/infer")
    with pytest.raises(ValueError, match="SKIN_PROTOCOL"):
        ClientConfig.from_env({"SKIN_PROTOCOL": "v3"})


def test_client_reads_a_rotated_key_again(torchserve, inference_url, tmp_path, fixture_images):
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "stale"}}))
    client = SkinClient(ClientConfig(url=inference_url, key_file=key_file))
    image = prepare_photo(fixture_images["SCC_ISIC_0024329.jpg"]).body
    with pytest.raises(ServerProblem) as failure:
        client.classify(image)
    assert failure.value.problem is Problem.KEY
    # What TorchServe does on POST /token: a new key in the same file.
    key_file.write_text(json.dumps({"inference": {"key": read_key(torchserve.key_file)}}))
    assert len(client.classify(image).scores) == len(CLASSES)


def test_https_page_with_the_generated_certificate(tmp_path):
    tls = ensure_certificate(tmp_path / "tls", settings.LOOPBACK)
    extensions = subprocess.run(
        ["openssl", "x509", "-in", str(tls.cert), "-noout", "-ext",
         "subjectAltName,extendedKeyUsage"], capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in extensions and "DNS:localhost" in extensions
    assert "TLS Web Server Authentication" in extensions
    assert ensure_certificate(tmp_path / "tls", settings.LOOPBACK).cert.read_bytes() == tls.cert.read_bytes()
    port = free_port()
    page = subprocess.Popen(streamlit_command(port, tls), cwd=settings.REPO, env=page_environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(page, port, tls)
        health = requests.get(f"https://{page_address(tls)}:{port}/_stcore/health", verify=tls.ca,
                              timeout=5)
        assert health.text == "ok"
    finally:
        stop_process(page)


def test_oversized_upload_is_reported_as_too_large(torchserve, inference_url):
    limit = int(read_properties(torchserve.home / "config.properties")["max_request_size"])
    client = SkinClient(ClientConfig(url=inference_url, key_file=torchserve.key_file))
    with pytest.raises(ServerProblem) as failure:
        client.classify(b"\xff" * (limit + 1))
    assert failure.value.problem is Problem.TOO_LARGE


def test_explanations_go_to_the_same_model_on_the_same_server():
    config = ClientConfig.from_env({"SKIN_INFERENCE_URL": "https://h:1/predictions/skin"})
    assert config.api().explanations_url == "https://h:1/explanations/skin"
