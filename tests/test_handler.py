"""The handler's steps, loaded in-process by TorchServe's own model loader from a real archive."""
from __future__ import annotations

import io
import json
import math
import pickle
import sys
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import ts
from PIL import Image
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.model_loader import TsModelLoader
from ts.service import Service

import settings
from contract.checks import check_prediction
from contract.classes import BY_CODE, CLASSES, CLASSES_FILE, CODES
from handler.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_metadata, load_release
from handler.preprocessing import dihedral_views, eval_transform, model_input
from imaging.decode import decode_image
from tests.conftest import TEST_INPUT_SIZE, TEST_REFERRAL_THRESHOLD, write_random_release
from tools.archive import build_archive

METRICS_CONFIG = Path(ts.__file__).parent / "configs" / "metrics.yaml"


def load_service(archive: Path, unpack_to: Path) -> Service:
    """Unpack an archive and load it the way a TorchServe backend worker does."""
    with zipfile.ZipFile(archive) as mar:
        mar.extractall(unpack_to)
    sys.path.insert(0, str(unpack_to))
    for module in ("skin_handler", "model"):
        sys.modules.pop(module, None)
    try:
        metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_CONFIG))
        metrics.initialize_cache()
        return TsModelLoader().load("skin", str(unpack_to), "skin_handler", None, 4,
                                    metrics_cache=metrics)
    finally:
        sys.path.remove(str(unpack_to))


def run_batch(service: Service, batch: list[dict]) -> tuple[list[dict], list[int]]:
    """One batch, in the frontend's wire form, through the handler as TorchServe's worker runs it;
    returns the responses and their HTTP status codes."""
    processors, rows, ids = Service.retrieve_data_for_inference(batch)
    service.context.request_processor = processors
    service.context.request_ids = ids
    service.context.metrics.request_ids = ids
    responses = service._entry_point(rows, service.context)
    return responses, [processor.get_response_status_code() for processor in processors]


def classify(service: Service, bodies: list[bytes]) -> tuple[list[dict], list[int]]:
    """One batch of raw image bodies through the handler."""
    return run_batch(service, [{"requestId": f"r{i}".encode(), "parameters": [
        {"name": "body", "contentType": "application/octet-stream", "value": body}]}
        for i, body in enumerate(bodies)])


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store")
    return build_archive(weights=write_random_release(tmp_path_factory.mktemp("rel")), export_path=store)


@pytest.fixture(scope="module")
def service(archive, tmp_path_factory) -> Service:
    return load_service(archive, tmp_path_factory.mktemp("unpacked"))


def test_a_lone_photo_has_its_gate_network_run_beside_the_task_network(service, fixture_images):
    """A worker runs fewer threads than there are cores, so a lone photo's gate network runs on a
    thread of its own, beside the task network; the answer, the gate's verdict and score included,
    is the one the photo gets in a batch, where the gate network runs after the task network."""
    handler = service._entry_point.__self__
    if handler.gate_beside is None:
        pytest.skip("one core: no core to spare for the gate")
    original, threads = handler.gate_network, []

    def recorded(images: torch.Tensor) -> torch.Tensor:
        threads.append(threading.current_thread().name)
        return original.network(images)

    handler.gate_network = replace(original, network=recorded)
    try:
        photos = list(fixture_images.values())[:2]
        (lone,), _ = classify(service, photos[:1])
        batched, _ = classify(service, photos)
    finally:
        handler.gate_network = original
    assert threads[0].startswith("gate") and threads[1] == threading.current_thread().name
    assert lone["gate"]["accepted"] == batched[0]["gate"]["accepted"]
    assert lone["gate"]["score"] == pytest.approx(batched[0]["gate"]["score"], abs=1e-4)
    assert ([p["probability"] for p in lone["predictions"]]
            == pytest.approx([p["probability"] for p in batched[0]["predictions"]], abs=1e-4))


def test_all_eight_classes_ranked_with_names(service, fixture_images):
    responses, statuses = classify(service, list(fixture_images.values()))
    assert statuses == [200] * len(fixture_images)
    for response in responses:
        check_prediction(response)  # all eight classes, ranked, probabilities summing to 1
        for prediction in response["predictions"]:
            lesion = BY_CODE[prediction["code"]]
            assert (prediction["name"], prediction["name_zh"], prediction["risk"]) == (
                lesion.name, lesion.name_zh, lesion.risk)
        assert (response["model"], response["version"]) == ("skin", "0.0.1")


def test_melanoma_is_named_melanoma():
    assert (BY_CODE["MEL"].name, BY_CODE["MEL"].name_zh, BY_CODE["MEL"].risk) == (
        "melanoma", "黑色素瘤", "malignant")
    assert {c.code for c in CLASSES if c.is_concerning} == {"AK", "BCC", "MEL", "SCC"}
    assert BY_CODE["AK"].risk == "pre-malignant"


def test_a_bad_image_fails_alone_and_the_batch_still_answers(service, fixture_images):
    good = list(fixture_images.values())[:3]
    alone, _ = classify(service, good)
    responses, statuses = classify(service, [good[0], b"not an image", good[1], good[2]])
    assert statuses == [200, 400, 200, 200]
    assert responses[1]["error"] == "invalid_image" and "not an image" in responses[1]["detail"]
    for expected, got in zip(alone, [responses[0], responses[2], responses[3]]):
        assert [p["code"] for p in got["predictions"]] == [p["code"] for p in expected["predictions"]]


def test_a_batch_of_only_bad_images_answers_each_with_400(service):
    responses, statuses = classify(service, [b"", b"%PDF-1.4"])
    assert statuses == [400, 400]
    assert "empty" in responses[0]["detail"] and "not an image" in responses[1]["detail"]


def test_exif_rotated_photo_gets_the_upright_result(service, fixture_images):
    upright = Image.open(io.BytesIO(fixture_images["BCC_ISIC_0024331.jpg"]))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phones write it
    rotated = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(rotated, "PNG", exif=exif.tobytes())
    straight = io.BytesIO()
    upright.save(straight, "PNG")
    (a, b), _ = classify(service, [straight.getvalue(), rotated.getvalue()])
    assert [p["code"] for p in a["predictions"]] == [p["code"] for p in b["predictions"]]
    for p, q in zip(a["predictions"], b["predictions"]):
        assert math.isclose(p["probability"], q["probability"], abs_tol=1e-5)


def test_calibration_temperature_from_the_release_is_applied(tmp_path, fixture_images, service):
    store = tmp_path / "store"
    hot = build_archive(weights=write_random_release(tmp_path / "rel", temperature=2.0), export_path=store)
    warm_service = load_service(hot, tmp_path / "unpacked")
    image = [fixture_images["DF_ISIC_0024318.jpg"]]
    (plain,), _ = classify(service, image)
    (scaled,), _ = classify(warm_service, image)
    # softmax(z / T) is proportional to softmax(z) ** (1 / T)
    powered = {p["code"]: p["probability"] ** 0.5 for p in plain["predictions"]}
    total = sum(powered.values())
    for prediction in scaled["predictions"]:
        assert math.isclose(prediction["probability"], powered[prediction["code"]] / total, rel_tol=1e-3)


def test_the_answer_is_the_release_run_in_process_at_its_own_frame_and_colours(tmp_path, service,
                                                                              fixture_images):
    """The handler frames each photo at the release's (non-square) input size and applies its colour
    constancy, exactly as training evaluated it: same probabilities as the release run here."""
    model, metadata = load_release(write_random_release(tmp_path / "release"))
    assert metadata["input_size"] == list(TEST_INPUT_SIZE) and metadata["colour_constancy"]
    images = list(fixture_images.values())
    frames = torch.stack([eval_transform(decode_image(image), metadata["input_size"]) for image in images])
    assert frames.shape[-2:] == TEST_INPUT_SIZE
    with torch.inference_mode():
        expected = torch.softmax(model(model_input(frames, colour_constancy=True)), dim=1)
    responses, _ = classify(service, images)
    for response, row in zip(responses, expected):
        served = {p["code"]: p["probability"] for p in response["predictions"]}
        assert [served[code] for code in CODES] == pytest.approx(row.tolist(), abs=1e-4)


def test_a_release_that_ships_dihedral_tta_answers_with_the_eight_views_averaged(tmp_path, fixture_images):
    weights = write_random_release(tmp_path / "release")
    metadata_file = weights.with_name(METADATA_FILE)
    metadata = json.loads(metadata_file.read_text())
    metadata["metrics"] = {"dihedral_tta_val_balanced_accuracy": {"without": 0.50, "with": 0.52,
                                                                   "min_gain": 0.01, "ships": True}}
    metadata_file.write_text(json.dumps(metadata))
    tta_service = load_service(build_archive(weights=weights, export_path=tmp_path / "store"), tmp_path / "unpacked")
    model, _ = load_release(weights)
    images = list(fixture_images.values())
    frames = torch.stack([eval_transform(decode_image(image), metadata["input_size"]) for image in images])
    with torch.inference_mode():
        inputs = model_input(frames, colour_constancy=True)
        averaged = torch.softmax(torch.stack([model(view) for view in dihedral_views(inputs)]).mean(0), dim=1)
        plain = torch.softmax(model(inputs), dim=1)
    responses, _ = classify(tta_service, images)
    served = torch.tensor([[{p["code"]: p["probability"] for p in response["predictions"]}[code] for code in CODES]
                           for response in responses])
    assert torch.allclose(served, averaged, atol=1e-4)
    assert (served - plain).abs().max() > 1e-3  # a random network is not symmetric: the views differ
    assert tta_service._entry_point.__self__.describe_handle()["dihedral_tta"] is True


def test_the_release_referral_threshold_reaches_every_answer(service, fixture_images):
    responses, _ = classify(service, list(fixture_images.values()))
    for response in responses:
        concern = sum(p["probability"] for p in response["predictions"] if BY_CODE[p["code"]].is_concerning)
        referral = response["referral"]
        assert referral["threshold"] == TEST_REFERRAL_THRESHOLD
        assert referral["score"] == pytest.approx(concern)
        assert referral["refer"] is (concern >= TEST_REFERRAL_THRESHOLD)
    assert service._entry_point.__self__.describe_handle()["referral"]["threshold"] == TEST_REFERRAL_THRESHOLD


def test_describe_returns_the_class_list_and_metadata(service):
    described = service._entry_point.__self__.describe_handle()
    assert [c["code"] for c in described["classes"]] == list(CODES)
    assert described["classes"][4]["name"] == "melanoma"
    assert described["version"] == "0.0.1" and described["input_size"] == list(TEST_INPUT_SIZE)
    assert described["torch_threads"] >= 1
    handler = service._entry_point.__self__
    assert described["gate"]["network_beside_task_network"] is (handler.gate_beside is not None)


def test_archive_carries_the_one_class_file_and_matching_release(archive):
    with zipfile.ZipFile(archive) as mar:
        assert mar.read("contract/classes.json") == CLASSES_FILE.read_bytes()
        release = json.loads(mar.read("skin_resnet34.json"))
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert release["classes"] == list(CODES)
    assert manifest["model"]["modelVersion"] == release["version"]
    assert manifest["model"]["handler"] == "skin_handler.py"


def test_the_shipped_release_is_what_make_serve_serves(tmp_path, fixture_images):
    """The committed release: within the size budget, archived and loaded as TorchServe does."""
    weights = settings.WEIGHTS
    metadata = load_metadata(weights.with_name(METADATA_FILE))
    assert weights.stat().st_size <= 45 * 2**20
    assert all(value.dtype == torch.float16 for value in torch.load(weights).values()
               if value.is_floating_point())
    assert metadata["temperature"] > 0 and metadata["metrics"]["balanced_accuracy"] > 0
    shipped = load_service(build_archive(weights=weights, export_path=tmp_path / "store"),
                           tmp_path / "unpacked")
    responses, statuses = classify(shipped, list(fixture_images.values()))
    assert statuses == [200] * len(fixture_images)
    assert {response["version"] for response in responses} == {metadata["version"]}


class OpensAFile:
    """Unpickled, it opens (creates) a file: what a tampered release could do with any code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_the_worker_loads_release_weights_as_tensors_only(archive, tmp_path, monkeypatch):
    """BaseHandler's own torch.load leaves weights_only to torch's default, which this variable turns
    off; the handler must load a release as tensors whatever the default."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code-ran"
    with zipfile.ZipFile(archive) as mar:
        state = torch.load(io.BytesIO(mar.read(WEIGHTS_FILE)), weights_only=True)
    state["payload"] = OpensAFile(marker)
    tampered_weights = io.BytesIO()
    torch.save(state, tampered_weights)
    tampered = tmp_path / "tampered.mar"
    with zipfile.ZipFile(archive) as mar, zipfile.ZipFile(tampered, "w") as out:
        for item in mar.infolist():
            out.writestr(item, tampered_weights.getvalue() if item.filename == WEIGHTS_FILE else mar.read(item))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_service(tampered, tmp_path / "unpacked")
    assert not marker.exists()
