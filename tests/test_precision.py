"""Serving at a precision: int8 and bf16 archives, the choice made per kind of CPU by the accuracy
gate, and archives that are rebuilt whenever what they were built from changes."""
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
from handler.cpus import cpu_info, cpu_kind
from handler.gate import GATE_FILE, file_sha256, load_gate
from handler.lite import installed_weights
from handler.preprocessing import eval_transform, release_input
from handler.runners import CALIBRATION_FILE, calibrate, quantise, runner
from handler.served_precision import (
    CHECK_FILE,
    CHOICES_DIR,
    SERVED_FILE,
    calibration_path,
    choice_path,
    load_calibration,
    release_choices,
    save_calibration_for,
    served_record,
)
from imaging.decode import decode_image
from imaging.framing import input_shape
from ops.release import versioned_archive
from ops.render import render_describe, render_precision
from tests.conftest import FIXTURES, TEST_BATCH_SIZE, TEST_INPUT_SIZE, TEST_MODEL_CONFIG, write_random_release
from tests.test_handler import classify, load_service
from tools.archive import DEFAULT_CONFIG, archived_digest, build_archive, ensure_archive, inputs_digest
from tools.precision_choice import accuracy_gate, ensure_choice, model_inputs, predictions, write_check

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
    for name in (WEIGHTS_FILE, METADATA_FILE, GATE_FILE, CHECK_FILE, CALIBRATION_FILE):
        if (settings.MODEL_STORE / name).is_file():
            shutil.copy2(settings.MODEL_STORE / name, folder / name)
    if (settings.MODEL_STORE / CHOICES_DIR).is_dir():
        shutil.copytree(settings.MODEL_STORE / CHOICES_DIR, folder / CHOICES_DIR)
    if not calibration_path(folder / WEIGHTS_FILE).is_file():
        model, metadata = load_release(folder / WEIGHTS_FILE)
        calibration = calibrate(model, [mirrored(fixture_inputs(metadata)[1])],
                              input_shape(metadata["input_size"]))
        save_calibration_for(calibration, folder / WEIGHTS_FILE, 32)
    return folder / WEIGHTS_FILE


def test_the_shipped_choices_belong_to_the_shipped_weights():
    """Every committed choice was made for the shipped weights by the accuracy gate's rule: what it
    chose passed, and everything faster that was scored failed; `make serve` runs this CPU's."""
    shipped = sorted((settings.MODEL_STORE / CHOICES_DIR).glob("*.json"))
    choices = release_choices(SHIPPED)
    assert shipped and len(choices) == len(shipped), "rerun make precision: a choice is stale"
    for kind, choice in choices.items():
        chosen = choice["candidates"][choice["chosen"]]
        assert choice["cpu_kind"] == kind == cpu_kind(choice["cpu"]["flags"])
        assert chosen["passed"]
        faster = [figures for figures in choice["candidates"].values()
                  if figures["images_per_s"] > chosen["images_per_s"]]
        assert all(figures.get("passed") is False for figures in faster)
    load_calibration(calibration_path(SHIPPED), file_sha256(SHIPPED))
    record = served_record(SHIPPED)
    here = choices.get(cpu_kind(cpu_info()["flags"]))
    assert record["precision"] == (here["chosen"] if here else "fp32")


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


def test_describe_says_when_a_requested_precision_was_never_checked():
    """A choice scores precisions fastest first and stops at the first that passes, so PRECISION=
    can ask for one that was timed and never scored; ops describe says so instead of failing."""
    choice = {"candidates": {"fp32": {"images_per_s": 84.8, "top1_agreement": 1.0, "bma_change": 0.0},
                             "int8": {"images_per_s": 284.9},
                             "int8-7bit": {"images_per_s": 289.1, "top1_agreement": 0.9805, "bma_change": 0.0009}},
              "scored_on": {"split": "validation", "images": 2000}}
    requested = render_precision({"precision": "int8", "source": "requested (PRECISION=)", "choice": choice})
    chosen = render_precision({"precision": "int8-7bit", "source": "measured", "choice": choice})
    assert requested.endswith("int8 was not checked for accuracy on this kind of CPU")
    assert chosen.endswith("top-1 agreement 0.981, BMA change +0.0009 on 2000 validation images")


def test_the_accuracy_gate_refuses_an_uncalibrated_quantisation(shipped_release):
    """Calibrated int8 agrees with fp32 on the fixtures but for one input at most; int8 without
    calibration (every activation at scale 1) is refused."""
    model, metadata = load_release(shipped_release)
    size = input_shape(metadata["input_size"])
    inputs = mirrored(fixture_inputs(metadata)[1])
    labels = torch.tensor([CODES.index(path.name.split("_")[0])
                           for path in sorted((FIXTURES / "images").glob("*.jpg"))] * 4)
    labels = labels.numpy()
    reference = predictions(runner(model, "fp32", size), inputs)
    calibrated = runner(model, "int8", size,
                        load_calibration(calibration_path(shipped_release), file_sha256(shipped_release)))
    broken = quantise(model, {}, size)
    with torch.inference_mode():
        broken_top = broken(inputs)[1].argmax(1).numpy()
    # One flip in these 32 inputs is already under the gate's 98%, a rule made for thousands of check
    # images (make precision's 2,000).
    agreement = accuracy_gate(reference, predictions(calibrated, inputs), labels)["top1_agreement"]
    assert agreement >= 1 - 1 / len(inputs)
    refused = accuracy_gate(reference, broken_top, labels)
    assert not refused["passed"] and refused["top1_agreement"] < 0.9


def write_check_images(weights: Path) -> None:
    """The fixture photos as a release's check images, with its fp32 answers."""
    model, metadata = load_release(weights)
    paths = sorted((FIXTURES / "images").glob("*.jpg"))
    fp32 = predictions(runner(model, "fp32", TEST_INPUT_SIZE), model_inputs(paths, metadata))
    write_check(weights, paths, [CODES.index(path.name.split("_")[0]) for path in paths], fp32.tolist())


def test_a_first_run_choice_never_serves_an_int8_that_disagrees(tmp_path, capsys):
    """`make serve` on a kind of CPU without a choice measures one, showing its progress: with a
    broken int8 calibration (every activation at scale 1) neither int8 variant can pass, so what it
    serves is the fastest precision that agrees with fp32, and every faster one was scored and
    failed. The archive then runs it and says why."""
    weights = write_random_release(tmp_path / "release")
    save_calibration_for({"int8": {}, "int8-7bit": {}}, weights, 0)
    assert ensure_choice(weights) is None and "make precision writes it" in capsys.readouterr().out
    write_check_images(weights)
    choice = ensure_choice(weights)
    progress = capsys.readouterr().out
    assert "choosing the serving precision" in progress and "int8:" in progress
    assert choice == json.loads(choice_path(weights).read_text()) and choice["chosen"] in ("fp32", "bf16")
    chosen = choice["candidates"][choice["chosen"]]
    assert chosen["passed"]
    for name in ("int8", "int8-7bit"):
        figures = choice["candidates"][name]
        assert figures["images_per_s"] <= chosen["images_per_s"] or figures["passed"] is False
    assert ensure_choice(weights) == choice, "a choice is measured once per kind of CPU"
    record = served_record(weights)
    assert record["precision"] == choice["chosen"] and choice["why"] in record["source"]


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


def test_bf16_serves_from_weights_stored_in_bf16_and_answers_in_float32(tmp_path) -> None:
    model, _ = load_release(write_random_release(tmp_path / "release"))
    bf16, fp32 = runner(model, "bf16", TEST_INPUT_SIZE), runner(model, "fp32", TEST_INPUT_SIZE)
    assert {p.dtype for p in bf16.module.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}, "Grad-CAM keeps the float model"
    images = torch.randn(4, 3, *TEST_INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    features, logits = bf16(images)
    assert features.dtype == logits.dtype == torch.float32
    assert torch.allclose(logits.softmax(1), fp32(images)[1].softmax(1), atol=0.05)


def write_int8_choice(weights: Path, flags: list[str]) -> None:
    """A choice of int8 for ``weights``, as if measured on a CPU with ``flags``."""
    model, metadata = load_release(weights)
    calibration = calibrate(model, [mirrored(fixture_inputs(metadata)[1])], TEST_INPUT_SIZE)
    candidates = {name: {"passed": True, "images_per_s": speed}
                  for name, speed in (("fp32", 40.0), ("bf16", 90.0), ("int8", 150.0))}
    kind = cpu_kind(flags)
    choice = {"weights_sha256": save_calibration_for(calibration, weights, 32), "chosen": "int8",
              "why": "a test's", "candidates": candidates, "cpu": {"model": "a test CPU", "flags": flags},
              "cpu_kind": kind}
    choice_path(weights, kind).parent.mkdir(exist_ok=True)
    choice_path(weights, kind).write_text(json.dumps(choice))


def test_an_archive_runs_the_choice_of_the_kind_of_cpu_it_lands_on(tmp_path, monkeypatch, fixture_images):
    """int8 measured where VNNI exists may saturate without it: a choice made on another kind of
    CPU is not served here, and an archive (a container image) carries every kind's choice, so a
    worker runs its own kind's, or fp32 where none was measured, and says why."""
    weights = write_random_release(tmp_path / "release")
    here = cpu_info()["flags"]
    other = [flag for flag in here if flag != "amx_int8"] if "amx_int8" in here else [*here, "amx_int8"]
    write_int8_choice(weights, other)
    record = served_record(weights)
    assert record["precision"] == "fp32" and f"measured on: {cpu_kind(other)}" in record["source"]

    write_int8_choice(weights, here)
    assert served_record(weights)["precision"] == "int8"
    archive = build_archive(weights=weights, export_path=tmp_path / "store")
    (choice_path(weights, cpu_kind(here))).unlink()
    for flags, expected in ((other, "int8"), (["avx512f"], "fp32")):
        monkeypatch.setattr(served_precision, "cpu_info", lambda flags=flags: {"model": "elsewhere", "flags": flags})
        service = load_service(archive, tmp_path / f"unpacked-{cpu_kind(flags)}")
        responses, statuses = classify(service, list(fixture_images.values()))
        assert statuses == [200] * len(fixture_images)
        described = service._entry_point.__self__.describe_handle()
        assert described["precision"] == expected
        assert described["precision_choice"]["cpu_kind"] == cpu_kind(flags)
    assert "no precision measured for these weights on this kind of CPU, avx512f" in \
        described["precision_choice"]["source"]


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
    other_config.write_text(TEST_MODEL_CONFIG.replace(f"batchSize: {TEST_BATCH_SIZE}", "batchSize: 64"))
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
