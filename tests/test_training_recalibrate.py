"""Recalibration: a release's temperature and referral threshold chosen again on its own validation
split, written into its metadata and its model report, with the weights untouched."""
from __future__ import annotations

import json
from pathlib import Path

from handler.checkpoint import METADATA_FILE
from tests.conftest import write_random_release
from tests.fixtures.training.make_data import make_labels_csv
from training import recalibrate


def test_recalibration_lowers_validation_ece_and_leaves_the_weights(tmp_path: Path) -> None:
    data = make_labels_csv(tmp_path / "ham", per_class=7)
    # Far too sharp on purpose: random weights are right one time in eight.
    weights = write_random_release(tmp_path / "release", input_size=(48, 64), version="0.0.1", temperature=0.3)
    metadata_path = weights.with_name(METADATA_FILE)
    metadata_path.write_text(json.dumps(json.loads(metadata_path.read_text())
                                        | {"split": {"seed": 0, "deduplicated": True}}))
    report = tmp_path / "model_report.json"
    report.write_text(json.dumps({"release": {"version": "0.0.1"}, "temperature": 0.3, "balanced_accuracy": 0.5}))
    weights_before = weights.read_bytes()

    figures = recalibrate.main(["--data", str(data), "--weights", str(weights), "--report", str(report)])

    assert figures["after"]["ece"]["validation"] < figures["before"]["ece"]["validation"]
    written = json.loads(metadata_path.read_text())
    assert written["temperature"] == figures["after"]["temperature"] > 0.3
    assert written["recalibrated"]["previous_temperature"] == 0.3
    assert written["referral"] == figures["after"]["referral"]
    assert written["metrics"]["ece_after_calibration"] == figures["after"]["ece"]["test"]
    assert weights.read_bytes() == weights_before
    reported = json.loads(report.read_text())
    assert reported["temperature"] == written["temperature"] and reported["balanced_accuracy"] == 0.5
