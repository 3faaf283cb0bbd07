"""Releases side by side on one split: each through its own preprocessing, a release read from git
history as well as from a file, and the card's table with MEL sensitivity in its own column."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_random_release
from tests.fixtures.training.make_data import make_labels_csv
from training import compare


def test_releases_are_scored_on_the_same_images_and_tabled(tmp_path: Path) -> None:
    data = make_labels_csv(tmp_path / "ham", per_class=7)
    small = write_random_release(tmp_path / "small", input_size=(48, 64), version="0.0.1")
    square = write_random_release(tmp_path / "square", input_size=(56, 56), version="0.0.2")
    out = tmp_path / "comparison.json"

    figures = compare.main(["--release", f"a={small}", f"b={square}", "shipped=HEAD", "--data", str(data),
                            "--output", str(out)])

    assert list(figures) == ["a", "b", "shipped"]
    assert figures["shipped"]["version"] == json.loads(Path("model_store/skin_resnet34.json").read_text())["version"]
    assert len({release["images"] for release in figures.values()}) == 1
    for release in figures.values():
        assert 0 <= release["balanced_accuracy"] <= 1 and 0 <= release["mel_sensitivity"] <= 1
        assert set(release["mel_calls"]) == {"as they are", "a black circular vignette added"}
        assert 0 <= release["circle_shift"] <= 1
    table = compare.format_comparison(figures)
    assert table.splitlines()[0].startswith("| release | BMA | **MEL sensitivity** | ham BMA | ham MEL |")
    assert json.loads(out.read_text())["releases"].keys() == figures.keys()
    assert all("operating_point" not in release for release in figures.values()), "no biases fitted on test"


def test_on_validation_each_release_is_also_tabled_at_the_ship_rules_operating_point(tmp_path: Path) -> None:
    data = make_labels_csv(tmp_path / "ham", per_class=7)
    release = write_random_release(tmp_path / "a", input_size=(48, 64), version="0.0.1")
    figures = compare.main(["--release", f"a={release}", "--data", str(data), "--split", "val",
                            "--output", str(tmp_path / "comparison.json")])
    point = figures["a"]["operating_point"]
    # Refitted biases find at least as many melanomas as the argmax, towards the floor.
    assert point["mel_sensitivity_by_source"]["ham"] >= figures["a"]["by_source"]["ham"]["mel_sensitivity"]
    assert 0 <= point["balanced_accuracy"] <= 1 and 0 <= point["referral_specificity"] <= 1
    table = compare.format_operating_points(figures).splitlines()
    assert table[0].endswith("| referral specificity at sensitivity 0.95 |") and table[2].startswith("| a | ")


def test_rescoring_one_release_keeps_the_others_figures(tmp_path: Path) -> None:
    data = make_labels_csv(tmp_path / "ham", per_class=7)
    first = write_random_release(tmp_path / "a", input_size=(48, 64), version="0.0.1")
    second = write_random_release(tmp_path / "b", input_size=(48, 64), version="0.0.2")
    out = tmp_path / "comparison.json"
    scored = compare.main(["--release", f"a={first}", f"b={second}", "--data", str(data), "--output", str(out)])
    stored = json.loads(out.read_text())
    stored["releases"]["a"]["balanced_accuracy"] = -1.0
    out.write_text(json.dumps(stored))
    metadata = json.loads((second.parent / "skin_resnet34.json").read_text())
    (second.parent / "skin_resnet34.json").write_text(json.dumps(metadata | {"version": "0.0.3"}))

    figures = compare.main(["--release", f"a={first}", f"b={second}", "--data", str(data), "--output", str(out),
                            "--rescore", "b"])

    assert list(figures) == ["a", "b"]
    assert figures["a"]["balanced_accuracy"] == -1.0, "a kept from the file, not scored again"
    assert figures["b"]["version"] == "0.0.3", "b read and scored again"
    assert figures["b"]["balanced_accuracy"] == scored["b"]["balanced_accuracy"]
    assert json.loads(out.read_text())["releases"] == figures
