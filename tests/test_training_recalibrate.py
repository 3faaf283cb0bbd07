"""Recalibration: a release's logit biases, temperature and referral threshold decided again on its
own validation split, from the network without the biases it had, written into its weights, its
metadata and its model report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from contract.classes import CODES
from handler.checkpoint import METADATA_FILE, load_release
from tests.conftest import write_random_release
from tests.fixtures.training.make_data import make_labels_csv
from training import recalibrate


def test_recalibration_decides_again_from_the_network_without_its_old_biases(tmp_path: Path) -> None:
    data = make_labels_csv(tmp_path / "ham", per_class=7)
    # Far too sharp on purpose: random weights are right one time in eight.
    weights = write_random_release(tmp_path / "release", input_size=(48, 64), version="0.0.1", temperature=0.3)
    old_bias = dict(zip(CODES, [-0.5, 0.2, 0.1, -0.3, 1.0, 0.0, -0.4, -0.1]))
    metadata_path = weights.with_name(METADATA_FILE)
    metadata_path.write_text(json.dumps(json.loads(metadata_path.read_text())
                                        | {"split": {"seed": 0, "deduplicated": True},
                                           "metrics": {"logit_bias": {"values": old_bias}}}))
    report = tmp_path / "model_report.json"
    report.write_text(json.dumps({"release": {"version": "0.0.1"}, "temperature": 0.3, "balanced_accuracy": 0.5}))
    before, _ = load_release(weights)

    figures = recalibrate.main(["--data", str(data), "--weights", str(weights), "--report", str(report),
                                "--version", "0.0.2"])

    after, written = load_release(weights)
    assert written == figures["after"] and written["version"] == "0.0.2"
    assert written["temperature"] > 0.3 and written["recalibrated"]["before"]["temperature"] == 0.3
    assert set(written["recalibrated"]["referral_weight_sweep"]) == {str(w) for w in recalibrate.SHOWN_REFERRAL_WEIGHTS}
    # Only the last layer's bias moves: the old biases come off, the new ones go on.
    new_bias = written["metrics"]["logit_bias"]["values"]
    for name, tensor in after.state_dict().items():
        if name != "fc.bias":
            assert torch.equal(tensor, before.state_dict()[name]), name
    unbiased_before = before.fc.bias.detach().numpy() - np.array([old_bias[code] for code in CODES])
    unbiased_after = after.fc.bias.detach().numpy() - np.array([new_bias[code] for code in CODES])
    assert np.allclose(unbiased_after, unbiased_before, atol=0.01)
    assert 0 < written["referral"]["threshold"] < 1 and "specificity" in written["referral"]["validation"]
    reported = json.loads(report.read_text())
    assert reported["release"]["version"] == "0.0.2" and reported["temperature"] == written["temperature"]
    assert reported["balanced_accuracy"] == written["metrics"]["balanced_accuracy"]
