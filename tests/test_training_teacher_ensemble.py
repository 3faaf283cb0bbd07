"""The teacher ensemble: members weigh alike whatever their logits' scale, soft targets combine only
over the same views, and the tool keeps the member or ensemble of members that validation prefers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from contract.classes import NUM_CLASSES
from tests.fixtures.training.make_data import make_labels_csv
from training import teacher_ensemble
from training.decisions import MEL_FLOOR
from training.models import build_teacher
from training.presets import BatchAugment
from training.soft_targets import TARGETS_FILE, view_parameters
from training.splits import load_split
from training.teacher import REPORT_FILE, logits_report, teacher_weights


def test_no_member_vetoes_a_class_the_others_find_likely() -> None:
    likely = torch.tensor([[2.0, 0.0] + [-9.0] * (NUM_CLASSES - 2)])
    sure_otherwise = torch.tensor([[-50.0, 0.0] + [-60.0] * (NUM_CLASSES - 2)])
    members = [likely, sure_otherwise]
    ensemble = teacher_ensemble.ensemble_logits(members).exp()
    expected = torch.stack([torch.softmax(member, 1) for member in members]).mean(0)
    assert torch.allclose(ensemble, expected)
    # A mean of logits would give class 0 next to nothing; the mean keeps half of what one member gave it.
    assert torch.softmax(sum(members) / 2, 1)[0, 0] < 1e-9
    assert ensemble[0, 0] >= torch.softmax(likely, 1)[0, 0] / 2
    assert torch.allclose(teacher_ensemble.ensemble_logits([likely]), torch.log_softmax(likely, 1))


def stored_targets(seed: int, images: int = 4, views: int = 3) -> dict:
    params = view_parameters(BatchAugment((12, 16)), images, views, seed)
    logits = torch.randn(images, views, NUM_CLASSES, generator=torch.Generator().manual_seed(seed + 100))
    return {"params": params, "done": images * views, "views": views, "logits": logits.half()}


def test_soft_targets_combine_only_over_the_same_views() -> None:
    first, second = stored_targets(seed=0), stored_targets(seed=0)
    second["logits"] = (second["logits"].float() * 3 + 1).half()
    combined = teacher_ensemble.ensemble_targets([first, second])
    assert combined["params"] is first["params"] and combined["logits"].dtype == torch.float16
    expected = teacher_ensemble.ensemble_logits([first["logits"], second["logits"]])
    assert torch.allclose(combined["logits"].float(), expected, atol=1e-2)
    with pytest.raises(SystemExit, match="different views"):
        teacher_ensemble.ensemble_targets([first, stored_targets(seed=1)])


def finished_teacher(run: Path, arch: str, train_images: int, views: int) -> Path:
    """A run folder as a finished teacher stage leaves it (ImageNet weights: untrained on skin)."""
    run.mkdir()
    torch.save(build_teacher(arch).state_dict(), teacher_weights(run))
    (run / REPORT_FILE).write_text(json.dumps({"arch": arch, "image_size": [48, 64]}))
    params = view_parameters(BatchAugment((48, 64)), train_images, views, seed=0)
    logits = torch.randn(train_images, views, NUM_CLASSES, generator=torch.Generator().manual_seed(len(arch)))
    torch.save({"params": params, "done": train_images * views, "views": views, "logits": logits.half()},
               run / TARGETS_FILE)
    return run


LABELS = torch.arange(NUM_CLASSES).repeat(4)
SOURCES = ["ham10000"] * len(LABELS)


def reported_candidates(logits: dict[Path, torch.Tensor]) -> dict[tuple[Path, ...], dict]:
    reports = {run: logits_report(member, LABELS, f"arch-{run}", SOURCES, MEL_FLOOR)
               for run, member in logits.items()}
    return teacher_ensemble.candidate_reports(logits, reports, LABELS, SOURCES, MEL_FLOOR)


def test_every_member_and_every_ensemble_of_them_is_a_candidate() -> None:
    a, b, c = runs = [Path(name) for name in ("a", "b", "c")]
    logits = {run: torch.randn(len(LABELS), NUM_CLASSES, generator=torch.Generator().manual_seed(index))
              for index, run in enumerate(runs)}
    candidates = reported_candidates(logits)
    assert list(candidates) == [(a,), (b,), (c,), (a, b), (a, c), (b, c), (a, b, c)]
    assert candidates[(a,)] == logits_report(logits[a], LABELS, "arch-a", SOURCES, MEL_FLOOR)
    pair = teacher_ensemble.ensemble_logits([logits[a], logits[c]])
    assert candidates[(a, c)] == logits_report(pair, LABELS, "arch-a+arch-c", SOURCES, MEL_FLOOR)
    assert candidates[(a, b, c)]["arch"] == "arch-a+arch-b+arch-c"


def test_a_tie_goes_to_the_fewest_teachers() -> None:
    right = 10 * torch.nn.functional.one_hot(LABELS, NUM_CLASSES).float()
    noise = torch.randn(len(LABELS), NUM_CLASSES, generator=torch.Generator().manual_seed(0))
    # "a" is always right, and so is every ensemble with it: its answers outweigh the noise's.
    candidates = reported_candidates({Path("noise"): noise, Path("a"): right, Path("a-again"): right.clone()})
    tied = [runs for runs, report in candidates.items() if teacher_ensemble.operating_bma(report) == 1.0]
    assert len(tied) >= 4
    assert teacher_ensemble.best_candidate(candidates) == (Path("a"),)


def test_the_kept_teacher_is_the_one_validation_prefers(tmp_path: Path) -> None:
    data = make_labels_csv(tmp_path / "ham", per_class=7)
    _, split, _ = load_split([data], seed=0, deduplicated=True)
    # Each run's eight-way head starts at random, so the two Lite0 runs are two teachers.
    runs = [finished_teacher(tmp_path / name, arch, len(split.train), views=2)
            for name, arch in (("lite0", "efficientnet-lite0"), ("lite0-b", "efficientnet-lite0"),
                               ("lite1", "efficientnet-lite1"))]
    output = tmp_path / "student"
    arguments = ["--teachers", *map(str, runs), "--data", str(data), "--threads", "1"]
    compared = teacher_ensemble.main(arguments)
    assert not output.exists(), "without --output it only compares"
    kept = teacher_ensemble.main([*arguments, "--output", str(output)])
    assert kept == compared

    assert json.loads((output / REPORT_FILE).read_text()) == json.loads(json.dumps(kept))
    assert len(kept["not_kept"]) == 6
    assert all(figures["balanced_accuracy"] <= teacher_ensemble.operating_bma(kept)
               for figures in kept["not_kept"].values())
    targets = torch.load(output / TARGETS_FILE, weights_only=True)
    members = [torch.load(Path(run) / TARGETS_FILE, weights_only=True) for run in kept["members"]]
    expected = teacher_ensemble.ensemble_targets(members)["logits"] if len(members) > 1 else members[0]["logits"]
    assert torch.equal(targets["logits"], expected)
    assert 0 <= kept["val_balanced_accuracy"] <= 1


def test_a_teacher_without_soft_targets_is_named_before_anything_is_scored(tmp_path: Path) -> None:
    runs = [finished_teacher(tmp_path / arch, arch, train_images=3, views=2)
            for arch in ("efficientnet-lite0", "efficientnet-lite1")]
    (runs[1] / TARGETS_FILE).unlink()
    missing = tmp_path / "no-data"
    with pytest.raises(SystemExit, match=f"no {TARGETS_FILE} yet in {runs[1]}"):
        teacher_ensemble.main(["--teachers", *map(str, runs), "--output", str(tmp_path / "student"),
                               "--data", str(missing)])
