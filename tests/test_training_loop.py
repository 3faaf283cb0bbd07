"""A tiny real training run to a release (two data folders, teacher, resume), and that the loop
learns at all."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import settings
from contract.classes import CODES
from handler.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_metadata
from handler.model import SkinResNet34
from tests.fixtures.training.make_data import COLOURS, make_labels_csv
from training import ablate, evaluate, shortcuts, train
from training.engine import predict, train_one_epoch
from training.losses import DistillationLoss
from training.mixed_precision import Precision
from training.presets import ImageBatches
from training.splits import load_split

MAX_RELEASE_BYTES = 45 * 1024 * 1024
FP32_CPU = Precision("fp32", torch.device("cpu"))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: these tests share a small machine, where two threads fighting other
    processes for two cores are slower than one; the setting is put back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_folders_train_to_a_loadable_release_and_resume(tmp_path: Path) -> None:
    # Seven lesions per class is the least that puts every class in each of the three splits.
    folders = [make_labels_csv(tmp_path / "ham", per_class=7),
               make_labels_csv(tmp_path / "bcn", per_class=7, lesion_prefix="BCN")]
    # A copy of one image under another lesion id: dropped before the split.
    copy = folders[1] / "images" / "ISIC_copy.jpg"
    copy.write_bytes((folders[1] / "images" / "ISIC_00000.jpg").read_bytes())
    with (folders[1] / "labels.csv").open("a") as labels:
        labels.write("ISIC_copy,BCN_copy,AK,ak,histo,50,male,back\n")
    store, docs, run = tmp_path / "model_store", tmp_path / "docs", tmp_path / "run"
    # fp32 skips auto's timing of both precisions; lite0 is the quickest teacher.
    common = ["--data", *map(str, folders), "--output", str(run), "--model-store", str(store),
              "--docs", str(docs), "--image-size", "48x64", "--batch-size", "16", "--threads", "1",
              "--precision", "fp32", "--teacher-arch", "efficientnet-lite0", "--teacher-size", "48x64",
              "--teacher-epochs", "1", "--views", "2", "--kd-alpha", "0.5"]
    # An ensemble member: the teacher and its views, then nothing else.
    member = train.main([*common, "--targets-only"])
    assert member["soft_targets"]["views"] == 2 and member["teacher"]["arch"] == "efficientnet-lite0"
    assert (run / "soft_targets.pt").is_file() and not (run / "release").exists() and not store.exists()
    # The run goes on from those targets. A model this small reads whatever it can, the circle
    # too: it ships only because it is told to.
    train.main([*common, "--epochs", "1", "--resume", "--always-ship"])

    metadata = load_metadata(store / METADATA_FILE)
    assert load_metadata(run / "release" / METADATA_FILE) == metadata, "the run keeps its own release"
    assert metadata["input_size"] == [48, 64]
    assert metadata["colour_constancy"] == {"method": "shades_of_gray", "power": 6}
    assert metadata["classes"] == list(CODES)
    assert metadata["training"]["dedupe"]["copies_dropped"] == 1
    assert metadata["split"]["deduplicated"] is True
    assert metadata["training"]["phases"]["student"]["epochs"] == 1
    assert metadata["training"]["precision"] == "fp32"
    assert metadata["data"]["sources"] == {"ham": 7 * len(CODES), "bcn": 7 * len(CODES)}
    assert metadata["split"]["sizes"]["test"] > 0
    threshold = metadata["referral"]["threshold"]
    assert isinstance(threshold, float) and 0 <= threshold <= 1
    assert set(metadata["metrics"]["by_source"]) == {"ham", "bcn"}
    assert metadata["metrics"]["teacher"]["arch"] == "efficientnet-lite0"
    assert set(metadata["metrics"]["logit_bias"]["values"]) == set(CODES)
    assert set(metadata["metrics"]["dihedral_tta_val_balanced_accuracy"]) >= {"with", "without", "ships"}
    soft = torch.load(run / "soft_targets.pt", weights_only=True)
    assert soft["logits"].shape == (metadata["split"]["sizes"]["train"], 2, len(CODES))
    weights = store / WEIGHTS_FILE
    assert weights.stat().st_size <= MAX_RELEASE_BYTES
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    SkinResNet34().load_state_dict(state)
    report = json.loads((docs / "model_report.json").read_text())
    assert report["split"] == "test" and (docs / "confusion_matrix.png").stat().st_size > 0

    scored = evaluate.main(["--data", *map(str, folders), "--split", "test", "--weights", str(weights),
                            "--output", str(tmp_path / "reports")])
    assert scored["images"] == metadata["split"]["sizes"]["test"]
    assert set(scored["by_source"]) == {"ham", "bcn"} and scored["referral"]["threshold"] == threshold
    assert set(scored["mel_calls_by_change"]) == set(scored["balanced_accuracy_by_change"]) == set(shortcuts.CHANGES)
    assert scored["balanced_accuracy_by_change"][shortcuts.AS_THEY_ARE] == scored["balanced_accuracy"]
    assert (tmp_path / "reports" / "confusion_test.png").is_file()

    # Releases before 2.0 carry no referral threshold; a new run must still score one to compare.
    old = tmp_path / "release-1.0"
    old.mkdir()
    (old / WEIGHTS_FILE).write_bytes(weights.read_bytes())
    (old / METADATA_FILE).write_text(json.dumps({k: v for k, v in metadata.items() if k != "referral"}))
    samples, split, _ = load_split(folders, seed=0, deduplicated=True)
    figures = evaluate.shipped_val_figures(old / WEIGHTS_FILE, samples, split.val, mel_floor=0.8)
    assert 0 <= figures["balanced_accuracy"] <= 1 and set(figures["mel_sensitivity_by_source"]) == {"ham", "bcn"}

    # The resumed run skips the finished teacher and soft targets and trains one more epoch.
    resumed = train.main([*common, "--epochs", "2", "--resume", "--any-teacher", "--always-ship"])
    history = resumed["training"]["phases"]["student"]["history"]
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert resumed["metrics"]["teacher"]["arch"] == "efficientnet-lite0"


def colour_batch(per_class: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Solid class colours with pixel noise: trivially separable, but not constant inputs."""
    labels = torch.arange(len(CODES)).repeat_interleave(per_class)
    colours = torch.tensor(COLOURS, dtype=torch.float)[labels].view(-1, 3, 1, 1)
    noise = torch.randn((len(labels), 3, size, size), generator=generator) * 20
    return (colours + noise).clamp(0, 255).to(torch.uint8), labels


def test_model_learns_a_separable_set() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_images, train_labels = colour_batch(8, 16, generator)
    sampler = torch.utils.data.RandomSampler(train_labels, generator=generator)
    train_batches = ImageBatches(train_images, train_labels, 16, sampler)
    model = SkinResNet34()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    # The classes differ only in colour, which colour constancy exists to remove.
    for _ in range(15):  # 4 steps each
        train_one_epoch(model, train_batches, DistillationLoss(), optimizer, scheduler, FP32_CPU,
                        colour_constancy=False)
    logits, labels = predict(model, ImageBatches(*colour_batch(8, 16, generator), 64), FP32_CPU,
                             colour_constancy=False)
    assert (logits.argmax(1) == labels).float().mean() > 0.9


def test_ablation_compares_each_choice_on_the_same_split(tmp_path: Path) -> None:
    folders = [make_labels_csv(tmp_path / "ham", per_class=7),
               make_labels_csv(tmp_path / "bcn", per_class=7, lesion_prefix="BCN", source="BCN20000")]
    shipped = settings.WEIGHTS.stat().st_mtime_ns
    arguments = ["--data", *map(str, folders), "--output", str(tmp_path / "runs"),
                 "--report", str(tmp_path / "ablations.json"), "--image-size", "48x64",
                 "--epochs", "1", "--epoch-samples", "32", "--precision", "fp32",
                 "--variants", "recipe", "no colour constancy", "trained without BCN20000, tested on all of it"]
    report = ablate.main(arguments)

    assert len(report["variants"]) == 3
    assert settings.WEIGHTS.stat().st_mtime_ns == shipped  # an ablation ships nothing
    for figures in report["variants"].values():
        assert 0 <= figures["val_balanced_accuracy"] <= 1 and 0 <= figures["test_balanced_accuracy"] <= 1
        assert figures["val_circle_shift"] == shortcuts.circle_shift(figures["val_mel_calls_with_circle"])
    assert json.loads((tmp_path / "ablations.json").read_text()) == report
    # Both sources are in the recipe's test split; left out of training, BCN20000 is all the test
    # split holds: every one of its images.
    assert set(report["variants"]["recipe"]["test_by_source"]) == {"ham", "BCN20000"}
    held_out = report["variants"]["trained without BCN20000, tested on all of it"]["test_by_source"]
    assert list(held_out) == ["BCN20000"] and held_out["BCN20000"]["images"] == 7 * len(CODES)
    runs = tmp_path / "runs"
    arguments_kept = [json.loads((runs / name / "arguments.json").read_text())
                      for name in ("recipe", "no-colour-constancy")]
    assert [kept["colour_constancy"] for kept in arguments_kept] == [True, False]
    # Run again (as in a later session), finished variants are read back, not trained again.
    figures_files = sorted(runs.glob(f"*/{ablate.FIGURES_FILE}"))
    written = [path.stat().st_mtime_ns for path in figures_files]
    assert ablate.main(arguments) == report
    assert [path.stat().st_mtime_ns for path in figures_files] == written and len(figures_files) == 3
