"""The Streamlit page, run by AppTest against the session's real TorchServe.

Every expected answer comes from posting the same bytes straight to TorchServe, so the tests hold
for the random test model and for a trained one alike.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from streamlit.testing.v1 import AppTest
from test_gate import darkened, lesion

from api.problems import Problem
from contract.classes import BY_CODE, CLASSES
from frontend.photo import prepare_photo
from frontend.texts import CHINESE, ENGLISH
from serve.torchserve import free_port

APP = Path(__file__).resolve().parent.parent / "frontend" / "app.py"
TEXT_ELEMENTS = ("title", "subheader", "markdown", "caption", "warning", "error", "info")


def served_answer(torchserve, inference_url: str, body: bytes) -> requests.Response:
    """TorchServe's answer to ``body``, asked directly rather than through the page."""
    return requests.post(inference_url, data=body, headers=torchserve.headers(), timeout=60)


@pytest.fixture
def page(monkeypatch, torchserve, inference_url) -> AppTest:
    """The page, configured through the environment as `make serve` configures it."""
    monkeypatch.setenv("SKIN_INFERENCE_URL", inference_url)
    monkeypatch.setenv("SKIN_KEY_FILE", str(torchserve.key_file))
    monkeypatch.delenv("SKIN_TOKEN", raising=False)
    return AppTest.from_file(str(APP), default_timeout=90).run()


def page_text(at: AppTest) -> str:
    return "\n".join(str(element.value) for kind in TEXT_ELEMENTS for element in at.get(kind))


def chart_bars(at: AppTest) -> list[tuple[str, float]]:
    """(label, probability) of each bar, top to bottom as Vega-Lite draws them."""
    [chart] = at.get("vega_lite_chart")
    encoding = json.loads(chart.proto.spec)["encoding"]
    assert encoding["y"]["sort"] == "-x"  # the longest bar on top
    table = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pylist()
    bars = [(row[encoding["y"]["field"]], row[encoding["x"]["field"]]) for row in table]
    return sorted(bars, key=lambda bar: bar[1], reverse=True)


def assert_ranked_result(at: AppTest, answer: dict, chinese: bool = False) -> None:
    assert not at.exception
    ranked = [BY_CODE[p["code"]] for p in answer["predictions"]]
    names = [c.name_zh if chinese else c.name for c in ranked]
    top_probability = answer["predictions"][0]["probability"]
    colon = "：" if chinese else ": "
    assert at.subheader[0].value == f"{names[0]}{colon}{top_probability:.0%}"
    assert (ranked[0].description_zh if chinese else ranked[0].description) in page_text(at)
    assert chart_bars(at) == [(f"{name} {p['probability']:.0%}", p["probability"])
                              for name, p in zip(names, answer["predictions"])]
    concerning = sum(p["probability"] for p in answer["predictions"]
                     if BY_CODE[p["code"]].is_concerning)
    threshold = answer["referral"]["threshold"]
    assert bool(at.error) == (concerning >= threshold)
    assert f"{threshold:.0%}" in page_text(at)
    assert answer["version"] in page_text(at)
    assert (CHINESE if chinese else ENGLISH).dermoscopy_only in page_text(at)


def test_page_always_shows_disclaimer_and_capture_tips(page):
    assert not page.exception
    disclaimer = "This is not a diagnosis; see a dermatologist about any changing lesion."
    assert disclaimer in page_text(page)
    assert "dermatoscope in contact" in page_text(page)
    page.segmented_control(key="language").set_value("中文").run()
    assert "本结果不是诊断" in page_text(page)
    assert "皮肤镜紧贴皮肤" in page_text(page)


def test_upload_shows_ranked_result_and_chart(page, torchserve, inference_url, fixture_images):
    original = fixture_images["MEL_ISIC_0024310.jpg"]
    answer = served_answer(torchserve, inference_url, prepare_photo(original).body).json()
    page.file_uploader(key="upload").upload("lesion.jpg", original, "image/jpeg").run()
    assert_ranked_result(page, answer)
    assert len(page.image) == 1


def test_camera_photo_shows_ranked_result(page, torchserve, inference_url, fixture_images):
    page.segmented_control(key="source").set_value("camera").run()
    assert page.camera_input(key="camera").resolution == "1080p"
    original = fixture_images["BCC_ISIC_0024331.jpg"]
    answer = served_answer(torchserve, inference_url, prepare_photo(original).body).json()
    page.camera_input(key="camera").upload("photo.jpg", original).run()
    assert_ranked_result(page, answer)


def test_language_toggle_shows_chinese_names(page, torchserve, inference_url, fixture_images):
    original = fixture_images["NV_ISIC_0024306.jpg"]
    answer = served_answer(torchserve, inference_url, prepare_photo(original).body).json()
    page.file_uploader(key="upload").upload("lesion.jpg", original, "image/jpeg").run()
    page.segmented_control(key="language").set_value("中文").run()
    assert_ranked_result(page, answer, chinese=True)
    assert "皮肤科" in page_text(page)


def test_a_refused_photo_shows_the_reason_and_how_to_retake_it_not_a_class(page, torchserve, inference_url,
                                                                          fixture_images):
    dark = darkened(lesion(fixture_images))
    answer = served_answer(torchserve, inference_url, prepare_photo(dark).body).json()
    assert answer["gate"]["reason"] == "too_dark" and len(answer["predictions"]) == len(CLASSES)
    page.file_uploader(key="upload").upload("dark.jpg", dark, "image/jpeg").run()
    assert not page.exception
    assert [s.value for s in page.subheader] == [ENGLISH.refused_title]
    [warning] = [w for w in page.warning if "too dark" in w.value]
    assert "take it again" in warning.value
    assert not page.get("vega_lite_chart") and not page.error and not page.info
    assert not any(c.name in page_text(page) for c in CLASSES)
    assert ENGLISH.dermoscopy_only not in page_text(page)  # no answer, nothing to qualify
    page.segmented_control(key="language").set_value("中文").run()
    assert [s.value for s in page.subheader] == [CHINESE.refused_title]
    assert CHINESE.refusals["too_dark"] in page_text(page)


def test_server_down_is_explained_without_a_traceback(page, monkeypatch, fixture_images):
    monkeypatch.setenv("SKIN_INFERENCE_URL", f"http://127.0.0.1:{free_port()}/predictions/skin")
    page.file_uploader(key="upload").upload("lesion.jpg", fixture_images["DF_ISIC_0024318.jpg"],
                                            "image/jpeg").run()
    assert not page.exception
    [error] = page.error
    # What a phone user can act on; the address and the command are in the page's log only.
    assert error.value == ENGLISH.problems[Problem.NOT_RUNNING]
    assert "127.0.0.1" not in error.value and "make serve" not in error.value
    assert not page.subheader


def test_non_image_shows_the_handlers_reason(page, torchserve, inference_url):
    body = b"%PDF-1.7 a scanned referral letter, not a photo"
    answer = served_answer(torchserve, inference_url, body)
    assert answer.status_code == 400
    page.file_uploader(key="upload").upload("letter.jpg", body, "image/jpeg").run()
    assert not page.exception
    [error] = page.error  # the page's own reading, by the server's rules: nothing was asked
    assert answer.json()["detail"] in error.value and "Nothing was sent" in error.value
    assert not page.image and not page.subheader


def test_rejected_key_is_explained(page, monkeypatch, fixture_images):
    monkeypatch.setenv("SKIN_TOKEN", "not-the-key")
    page.file_uploader(key="upload").upload("lesion.jpg", fixture_images["AK_ISIC_0024468.jpg"],
                                            "image/jpeg").run()
    assert not page.exception
    [error] = page.error
    assert error.value == ENGLISH.problems[Problem.KEY] and "SKIN_TOKEN" not in error.value


def served_explanation(torchserve, inference_url: str, body: bytes) -> dict:
    """TorchServe's explanation of ``body``, asked directly rather than through the page."""
    answer = requests.post(inference_url.replace("/predictions/", "/explanations/"), data=body,
                           headers=torchserve.headers(), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_overlay_toggle_shows_what_the_model_looked_at(page, torchserve, inference_url,
                                                       fixture_images):
    original = fixture_images["MEL_ISIC_0024310.jpg"]
    body = prepare_photo(original).body
    answer = served_answer(torchserve, inference_url, body).json()
    explained = served_explanation(torchserve, inference_url, body)
    assert explained["class"]["code"] == answer["predictions"][0]["code"]
    page.file_uploader(key="upload").upload("lesion.jpg", original, "image/jpeg").run()
    [photo] = page.image
    assert "counted most" not in page_text(page)

    page.toggle(key="overlay").set_value(True).run()
    assert_ranked_result(page, answer)
    [drawn] = page.image
    assert drawn.value != photo.value
    lesion = BY_CODE[explained["class"]["code"]]
    assert f"counted most towards {lesion.name}" in page_text(page)
    page.segmented_control(key="language").set_value("中文").run()
    assert f"对“{lesion.name_zh}”这一结果影响最大" in page_text(page)

    page.toggle(key="overlay").set_value(False).run()
    assert [image.value for image in page.image] == [photo.value]
    assert "影响最大" not in page_text(page)
