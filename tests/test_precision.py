"""Serving at a precision: int8 and bf16 archives, the accuracy gate that chooses between them, and
archives that are rebuilt whenever what they were built from changes."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import requests
import torch

import settings
from contract.classes import CODES
from handler import served_precision
from handler.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_release
from handler.cpus import cpu_info
from handler.gate import GATE_FILE, file_sha256, load_gate
from handler.lite import installed_weights
from handler.preprocessing import eval_transform, release_input
from handler.runners import CALIBRATION_FILE, calibrate, quantise, runner
from handler.served_precision import (
    CHOICE_FILE,
    SERVED_FILE,
    calibration_path,
    load_calibration,
    save_calibration_for,
    served_record,
)
from imaging.decode import decode_image
from imaging.framing import input_shape
from ops.release import versioned_archive
from ops.render import render_describe
from tests.conftest import FIXTURES, TEST_INPUT_SIZE, TEST_MODEL_CONFIG, write_random_release
from tests.test_handler import classify, load_service
from tools.archive import DEFAULT_CONFIG, archived_digest, build_archive, ensure_archive, inputs_digest
from training.choose_precision import accuracy_gate, choose

SHIPPED = settings.WEIGHTS


def fixture_inputs(metadata: dict) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The fixture photos as the handler frames them: (frames, model inputs, decoded sizes)."""
    photos = [decode_image(path.read_bytes()) for path in sorted((FIXTURES / "images").glob("*.jpg"))]
    frames = torch.stack([eval_transform(photo, metadata["input_size"]) for photo in photos])
    inputs = release_input(frames, metadata)
    return frames, inputs, [photo.size for photo in photos]


def mirrored(inputs: torch.Tensor) -> torch.Tensor:
    """Calibration images for a test: the fixtures and their mirror images."""
    return torch.cat([inputs, inputs.flip(-1), inputs.flip(-2), inputs.flip(-1, -2)])


@pytest.fixture(scope="module")
def shipped_release(tmp_path_factory) -> Path:
    """The shipped release copied aside, with its committed precision files when there are any."""
    folder = tmp_path_factory.mktemp("shipped")
    for name in (WEIGHTS_FILE, METADATA_FILE, GATE_FILE, CHOICE_FILE, CALIBRATION_FILE):
        if (settings.MODEL_STORE / name).is_file():
            shutil.copy2(settings.MODEL_STORE / name, folder / name)
    if not calibration_path(folder / WEIGHTS_FILE).is_file():
        model, metadata = load_release(folder / WEIGHTS_FILE)
        calibration = calibrate(model, [mirrored(fixture_inputs(metadata)[1])],
                              input_shape(metadata["input_size"]))
        save_calibration_for(calibration, folder / WEIGHTS_FILE, 32)
    return folder / WEIGHTS_FILE


def test_the_shipped_choice_belongs_to_the_shipped_weights():
    """`make serve` serves the measured precision only if the choice was made for these weights."""
    record = served_record(SHIPPED)
    assert record["choice"] is not None, f"rerun make precision: {CHOICE_FILE} is stale or missing"
    choice = record["choice"]
    assert choice["chosen"] == choose(choice["candidates"])
    assert choice["candidates"][choice["chosen"]]["passed"]
    # The choice holds on the kind of CPU it was measured on; elsewhere fp32 until it is measured there.
    on_this_kind = choice["cpu"]["flags"] == cpu_info()["flags"]
    assert record["precision"] == (choice["chosen"] if on_this_kind else "fp32")
    if choice["chosen"] == "int8":
        load_calibration(calibration_path(SHIPPED), file_sha256(SHIPPED))


def test_an_int8_archive_answers_torchserve_and_agrees_with_fp32(
        shipped_release, model_store, torchserve, fixture_images):
    """A quantised archive on a real TorchServe: eight ranked classes, the same top class as fp32
    on every fixture photo, the gate's verdicts as its own fp32 network gives them in this process
    (the task network's precision does not reach the gate), and its precision in
    ?customized=true."""
    config = model_store / "int8-model-config.yaml"
    config.write_text(TEST_MODEL_CONFIG)
    built = build_archive(weights=shipped_release, export_path=model_store, config_file=config,
                          model_name="skin_int8", precision="int8")
    model, metadata = load_release(shipped_release)
    frames, inputs, sizes = fixture_inputs(metadata)
    gate, network = load_gate(shipped_release.with_name(GATE_FILE), shipped_release, installed_weights())
    shape = input_shape(metadata["input_size"])
    expected_top = [CODES[i] for i in runner(model, "fp32", shape)(inputs)[1].argmax(1)]
    photos = [decode_image(path.read_bytes()) for path in sorted((FIXTURES / "images").glob("*.jpg"))]
    distances = gate.distances(network(torch.stack([network.frame(photo) for photo in photos])))
    expected_gate = [gate.check(frame, size, float(distance)).accepted
                     for frame, size, distance in zip(frames, sizes, distances)]

    api = torchserve.management()
    api.register(built.name, batch_size=4, max_batch_delay=50, workers=1, name="skin_int8")
    try:
        url = f"{torchserve.url('inference')}/predictions/skin_int8"
        answers = [requests.post(url, data=body, headers=torchserve.headers("inference"), timeout=60)
                   for body in fixture_images.values()]
        described = api.request("GET", "/models/skin_int8", params={"customized": "true"})
        [version] = api.describe("skin_int8")
    finally:
        api.unregister("skin_int8")
    bodies = [answer.json() for answer in answers]
    assert [answer.status_code for answer in answers] == [200] * len(fixture_images)
    for body in bodies:
        probabilities = [p["probability"] for p in body["predictions"]]
        assert sorted(p["code"] for p in body["predictions"]) == sorted(CODES)
        assert probabilities == sorted(probabilities, reverse=True)
    assert [body["predictions"][0]["code"] for body in bodies] == expected_top
    assert [body["gate"]["accepted"] for body in bodies] == expected_gate
    custom = described[0]["customizedMetadata"]
    assert custom["precision"] == "int8"
    assert custom["precision_choice"]["precision"] == "int8"
    assert custom["gate"]["max_distance"] == pytest.approx(gate.max_distance)
    assert version["precision"]["precision"] == "int8"
    assert "  precision    int8, requested" in render_describe([version])


def test_the_accuracy_gate_refuses_an_uncalibrated_quantisation(shipped_release):
    """Calibrated int8 passes against fp32 on the fixtures; int8 without calibration (every
    activation at scale 1) is refused."""
    model, metadata = load_release(shipped_release)
    size = input_shape(metadata["input_size"])
    inputs = mirrored(fixture_inputs(metadata)[1])
    labels = torch.tensor([CODES.index(path.name.split("_")[0])
                           for path in sorted((FIXTURES / "images").glob("*.jpg"))] * 4)
    reference = runner(model, "fp32", size)(inputs)[1]
    calibrated = runner(model, "int8", size,
                        load_calibration(calibration_path(shipped_release), file_sha256(shipped_release)))
    broken = quantise(model, {}, size)
    with torch.inference_mode():
        broken_logits = broken(inputs)[1]
    assert accuracy_gate(reference, calibrated(inputs)[1], labels)["passed"]
    refused = accuracy_gate(reference, broken_logits, labels)
    assert not refused["passed"] and refused["top1_agreement"] < 0.98


def test_choose_takes_the_fastest_that_passed():
    candidates = {"fp32": {"passed": True, "images_per_s": 50.0},
                  "bf16": {"passed": True, "images_per_s": 70.0},
                  "int8": {"passed": False, "images_per_s": 150.0}}
    assert choose(candidates) == "bf16"


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_a_non_square_release_runs_at_its_precision_in_the_handler(precision, tmp_path, fixture_images):
    """The release's 72x96 input reaches the quantised graph and the bf16 module in the handler."""
    weights = write_random_release(tmp_path / "release")
    model, metadata = load_release(weights)
    calibration = calibrate(model, [mirrored(fixture_inputs(metadata)[1])], TEST_INPUT_SIZE)
    save_calibration_for(calibration, weights, 32)
    archive = build_archive(weights=weights, export_path=tmp_path / "store", precision=precision)
    service = load_service(archive, tmp_path / "unpacked")
    responses, statuses = classify(service, list(fixture_images.values()))
    assert statuses == [200] * len(fixture_images)
    described = service._entry_point.__self__.describe_handle()
    assert described["input_size"] == list(TEST_INPUT_SIZE)
    assert described["precision"] == precision


def write_int8_choice(weights: Path, flags: list[str]) -> None:
    """A `make precision` choice of int8 for ``weights``, as if measured on a CPU with ``flags``."""
    model, metadata = load_release(weights)
    calibration = calibrate(model, [mirrored(fixture_inputs(metadata)[1])], TEST_INPUT_SIZE)
    candidates = {name: {"passed": True, "images_per_s": speed}
                  for name, speed in (("fp32", 40.0), ("bf16", 90.0), ("int8", 150.0))}
    choice = {"weights_sha256": save_calibration_for(calibration, weights, 32), "chosen": "int8",
              "candidates": candidates, "cpu": {"model": "a test CPU", "flags": flags}}
    (weights.with_name(CHOICE_FILE)).write_text(json.dumps(choice))


def test_a_choice_made_on_another_kind_of_cpu_is_served_in_fp32(tmp_path, monkeypatch, fixture_images):
    """int8 measured where VNNI exists saturates without it: the archive built here, and an archive
    built elsewhere and loaded here (a container image), both run fp32 and say why."""
    weights = write_random_release(tmp_path / "release")
    here = cpu_info()["flags"]
    other = [flag for flag in here if flag != "amx_int8"] if "amx_int8" in here else [*here, "amx_int8"]
    write_int8_choice(weights, other)
    record = served_record(weights)
    assert record["precision"] == "fp32" and "run make precision on this machine" in record["source"]

    write_int8_choice(weights, here)
    assert served_record(weights)["precision"] == "int8"
    archive = build_archive(weights=weights, export_path=tmp_path / "store")
    monkeypatch.setattr(served_precision, "cpu_info", lambda: {"model": "elsewhere", "flags": other})
    service = load_service(archive, tmp_path / "unpacked")
    responses, statuses = classify(service, list(fixture_images.values()))
    assert statuses == [200] * len(fixture_images)
    described = service._entry_point.__self__.describe_handle()
    assert described["precision"] == "fp32"
    assert "chose int8 on a CPU with" in described["precision_choice"]["source"]


def test_int8_without_a_calibration_is_refused_at_archive_time(tmp_path):
    weights = write_random_release(tmp_path / "release")
    with pytest.raises(FileNotFoundError, match="make precision"):
        build_archive(weights=weights, export_path=tmp_path / "store", precision="int8")


def test_an_archive_from_other_inputs_is_rebuilt(tmp_path):
    """bench/gpu_run.sh writes its GPU archive to model_store/skin.mar; `make archive` must not
    take that for the CPU archive because it is newer than the release."""
    weights = write_random_release(tmp_path / "release")
    store = tmp_path / "store"
    other_config = tmp_path / "gpu-model-config.yaml"
    other_config.write_text(TEST_MODEL_CONFIG.replace("batchSize: 4", "batchSize: 64"))
    build_archive(weights=weights, export_path=store, config_file=other_config)
    archive, rebuilt = ensure_archive(weights=weights, export_path=store)
    assert rebuilt
    with zipfile.ZipFile(archive) as mar:
        assert b"batchSize: 64" not in mar.read("model-config.yaml")
    assert ensure_archive(weights=weights, export_path=store) == (archive, False)
    archive, rebuilt = ensure_archive(weights=weights, export_path=store, precision="bf16")
    assert rebuilt and json.loads(zipfile.ZipFile(archive).read(SERVED_FILE))["precision"] == "bf16"


def test_register_rebuilds_a_versioned_archive_of_other_weights(tmp_path):
    """`ops register` used to reuse any skin-<version>.mar; one built from other weights of the same
    version must be replaced."""
    old = write_random_release(tmp_path / "old", version="0.0.3")
    new = write_random_release(tmp_path / "new", version="0.0.3", temperature=2.0)
    store = tmp_path / "store"
    store.mkdir()
    first, _ = versioned_archive(old, store)
    second, version = versioned_archive(new, store)
    assert second == first and version == "0.0.3"
    with zipfile.ZipFile(second) as mar:
        assert json.loads(mar.read(METADATA_FILE))["temperature"] == 2.0
    assert archived_digest(second) == inputs_digest(new, DEFAULT_CONFIG, served_record(new))
