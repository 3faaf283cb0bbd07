import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from handler.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_metadata
from handler.classes import CODES
from handler.model import SkinResNet34
from tests.fixtures.training.make_data import COLOURS, make_labels_csv
from training import evaluate, train
from training.engine import predict, train_one_epoch
from training.losses import DistillationLoss
from training.presets import CachedImages

MAX_RELEASE_BYTES = 45 * 1024 * 1024


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: these tests share a small machine, where two threads fighting other
    processes for two cores are slower than one; the setting is put back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_one_epoch_writes_a_loadable_release_and_resumes(tmp_path: Path) -> None:
    # Seven lesions per class is the least that puts every class in each of the three splits.
    data = make_labels_csv(tmp_path / "data", per_class=7)
    store, docs, run = tmp_path / "model_store", tmp_path / "docs", tmp_path / "run"
    common = ["--data", str(data), "--output", str(run), "--model-store", str(store), "--docs", str(docs),
              "--image-size", "64", "--batch-size", "16", "--threads", "1", "--teacher", "--teacher-epochs", "1"]
    train.main([*common, "--epochs", "1"])

    metadata = load_metadata(store / METADATA_FILE)
    assert metadata["input_size"] == 64
    assert metadata["classes"] == list(CODES)
    assert metadata["training"]["epochs"] == 1
    assert metadata["split"]["sizes"]["test"] > 0
    assert metadata["metrics"]["teacher"]["arch"] == "efficientnet-lite0"
    weights = store / WEIGHTS_FILE
    assert weights.stat().st_size <= MAX_RELEASE_BYTES
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    SkinResNet34().load_state_dict(state)
    report = json.loads((docs / "model_report.json").read_text())
    assert report["split"] == "test" and (docs / "confusion_matrix.png").stat().st_size > 0

    scored = evaluate.main(["--data", str(data), "--split", "test", "--weights", str(weights),
                            "--output", str(tmp_path / "reports")])
    assert scored["images"] == metadata["split"]["sizes"]["test"]
    assert (tmp_path / "reports" / "confusion_test.png").is_file()

    train.main([*common, "--epochs", "2", "--resume"])
    history = load_metadata(store / METADATA_FILE)["training"]["history"]
    assert [entry["epoch"] for entry in history] == [1, 2]


def colour_batch(per_class: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Solid class colours with pixel noise: trivially separable, but not constant inputs."""
    labels = torch.arange(len(CODES)).repeat_interleave(per_class)
    colours = torch.tensor(COLOURS, dtype=torch.float)[labels].view(-1, 3, 1, 1)
    noise = torch.randn((len(labels), 3, size, size), generator=generator) * 20
    return (colours + noise).clamp(0, 255).to(torch.uint8), labels


def test_model_learns_a_separable_set() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_set = CachedImages(*colour_batch(8, 16, generator))
    test_set = CachedImages(*colour_batch(8, 16, generator))
    loader = torch.utils.data.DataLoader(train_set, batch_size=16, shuffle=True, generator=generator)
    model = SkinResNet34()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    cpu = torch.device("cpu")
    for _ in range(15):  # 4 steps each
        train_one_epoch(model, loader, DistillationLoss(), optimizer, scheduler, cpu)
    logits, labels = predict(model, torch.utils.data.DataLoader(test_set, batch_size=64), cpu)
    assert (logits.argmax(1) == labels).float().mean() > 0.9
