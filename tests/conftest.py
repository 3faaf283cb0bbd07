"""Shared fixtures: a randomly initialised release with its gate, its archive, and a real TorchServe
serving it.

The session's TorchServe runs on free ports with its own home, so the suite can run beside a live
`make serve`. Tests that change server state (scaling, registering) must put it back.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import settings
from contract.classes import CODES
from handler.checkpoint import METADATA_FILE, load_metadata, save_release
from handler.gate import GATE_FILE, save_gate
from handler.model import SkinResNet34
from handler.preprocessing import MEAN, STD
from imaging.decode import decode_image
from serve.torchserve import TorchServe
from tools.archive import build_archive
from training.gate import fit_gate, gate_network, photos_of

FIXTURES = Path(__file__).parent / "fixtures"
# Small, so the CPU answers quickly, and not square, so the release's shape must reach the handler.
TEST_INPUT_SIZE = (72, 96)
TEST_REFERRAL_THRESHOLD = 0.4
# The test servers' batch: a test that sends this many requests at once gets one full batch, not a
# wait of maxBatchDelay per request.
TEST_BATCH_SIZE = 4
TEST_MODEL_CONFIG = f"""\
minWorkers: 1
maxWorkers: 1
batchSize: {TEST_BATCH_SIZE}
maxBatchDelay: 200
responseTimeout: 60
handler:
  threads_per_worker: 1
"""
# A test release's gate is fitted on the fixture photos with no quantile cut, so its thresholds sit
# on the fixtures themselves; the page re-encodes a photo and the server batches it differently,
# which moves each measure a little. These factors widen the thresholds past that, and stay far
# inside the photos built to be refused (a seventh of the light, 2.5x the light, a blur of 8 px).
FIXTURE_GATE_MARGINS = {"min_luminance": 0.9, "max_luminance": 1.1, "min_sharpness": 0.8}
MIRRORS = (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180)
# The suite's processes (pytest, TorchServe workers, Streamlit) share two cores; one torch thread
# each keeps them from spinning against each other, which costs far more than it saves.
torch.set_num_threads(1)


def write_random_release(directory: Path, input_size: tuple[int, int] = TEST_INPUT_SIZE,
                         version: str = "0.0.1", temperature: float = 1.0) -> Path:
    """A release with seeded random weights and its gate: real archive, real server, no trained
    model needed."""
    torch.manual_seed(0)
    metadata = {"name": "skin", "version": version, "arch": "resnet34", "classes": list(CODES),
                "input_size": list(input_size), "colour_constancy": {"method": "shades_of_gray", "power": 6},
                "mean": list(MEAN), "std": list(STD), "temperature": temperature,
                "referral": {"threshold": TEST_REFERRAL_THRESHOLD}}
    weights = save_release(SkinResNet34().state_dict(), metadata, directory)
    write_fixture_gate(weights)
    return weights


def write_fixture_gate(weights: Path) -> Path:
    """The gate of a test release, fitted in seconds on the fixture photos and their mirror images
    with no quantile cut: every fixture photo lies inside every quality threshold, and a photo built
    to be too dark, too bright or blurred lies outside. Its distance check accepts everything: eight
    lesions are too few to set a distance on, so ``not_dermoscopy`` is tested on the shipped
    release's gate (``shipped_server``)."""
    metadata = load_metadata(weights.with_name(METADATA_FILE))
    photos, labels = [], []
    for path in sorted((FIXTURES / "images").glob("*.jpg")):
        photo = decode_image(path.read_bytes())
        views = [photo, *(photo.transpose(mirror) for mirror in MIRRORS)]
        photos += views
        labels += [CODES.index(path.name.split("_")[0])] * len(views)
    network, record = gate_network()
    bank = photos_of(photos, metadata, network)
    state = fit_gate(bank, np.zeros(len(labels)), bank.features, [np.array(labels)], weights, metadata,
                     record, keep=1.0, quality_quantile=0.0)
    for name, factor in FIXTURE_GATE_MARGINS.items():
        state["thresholds"][name] *= factor
    state["thresholds"]["max_distance"] = sys.float_info.max  # finite: answers are JSON
    return save_gate(state, weights.with_name(GATE_FILE))


@pytest.fixture(scope="session")
def fixture_images() -> dict[str, bytes]:
    """One real HAM10000 JPEG per class, keyed by file name."""
    return {path.name: path.read_bytes() for path in sorted((FIXTURES / "images").glob("*.jpg"))}


@pytest.fixture(scope="session")
def model_store(tmp_path_factory) -> Path:
    """A model store holding skin.mar with a batch size of 4, built from a random release, or from
    the release that SKIN_TEST_WEIGHTS names (to run the suite, or take screenshots, on a real one).
    """
    store = tmp_path_factory.mktemp("model_store")
    chosen = os.environ.get("SKIN_TEST_WEIGHTS")
    weights = Path(chosen) if chosen else write_random_release(tmp_path_factory.mktemp("release"))
    config = store / "test-model-config.yaml"
    config.write_text(TEST_MODEL_CONFIG)
    build_archive(weights=weights, export_path=store, config_file=config)
    return store


@pytest.fixture(scope="session")
def torchserve(model_store, tmp_path_factory) -> TorchServe:
    """A real TorchServe serving that store; stopped at the end of the session."""
    home = tmp_path_factory.mktemp("torchserve")
    with TorchServe.on_free_ports(home, model_store=model_store).running(timeout=120) as server:
        yield server


@pytest.fixture(scope="session")
def torchserve_v2(model_store, tmp_path_factory) -> TorchServe:
    """A second real TorchServe serving the same store in the Open Inference Protocol (KServe v2):
    the same archive, with only the configuration's service envelope changed."""
    home = tmp_path_factory.mktemp("torchserve_v2")
    with TorchServe.on_free_ports(home, model_store=model_store, protocol="v2").running(timeout=180) as server:
        yield server


@pytest.fixture(scope="session")
def shipped_server(tmp_path_factory) -> TorchServe:
    """The shipped release (trained weights, their gate) as ``skin`` and, as ``untrained``, the same
    release with the random weights of a network that never saw a lesion, side by side in one real
    TorchServe: for what only a trained model shows (heatmaps on the lesion, refusing non-lesions)."""
    metadata = load_metadata(settings.MODEL_STORE / METADATA_FILE)
    torch.manual_seed(0)
    untrained = save_release(SkinResNet34().state_dict(), metadata, tmp_path_factory.mktemp("untrained"))
    write_fixture_gate(untrained)
    store = tmp_path_factory.mktemp("shipped_store")
    config = store / "test-model-config.yaml"
    config.write_text(TEST_MODEL_CONFIG)
    build_archive(weights=settings.WEIGHTS, export_path=store, config_file=config)
    build_archive(weights=untrained, export_path=store, config_file=config, model_name="untrained")
    home = tmp_path_factory.mktemp("shipped_torchserve")
    server = TorchServe.on_free_ports(home, model_store=store, models="skin=skin.mar,untrained=untrained.mar")
    with server.running(timeout=300):
        server.wait_ready("untrained", timeout=300)
        yield server


@pytest.fixture
def inference_url(torchserve) -> str:
    return f"{torchserve.url('inference')}/predictions/skin"
