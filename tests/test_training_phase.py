"""A phase stopped within an epoch resumes from the batch after its checkpoint, and keeps the
better of its weights and their moving average."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from contract.classes import CODES
from training.losses import DistillationLoss
from training.mixed_precision import Precision
from training.phase import Phase, Schedule
from training.presets import ImageBatches
from training.sampling import EpochSampler

FP32_CPU = Precision("fp32", torch.device("cpu"))
SCHEDULE = Schedule(lr=1e-2, epochs=2, warmup=0.1, weight_decay=0.0)


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, len(CODES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(images.mean(dim=(2, 3)))


def batches() -> ImageBatches:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(len(CODES)).repeat(4)
    images = (labels.view(-1, 1, 1, 1).float() * 30 + torch.rand(len(labels), 3, 4, 4, generator=generator) * 5)
    return ImageBatches(images.clamp(0, 255).to(torch.uint8), labels, 8,
                        EpochSampler(torch.ones(len(labels)), 32, seed=0))


def phase(tmp_path: Path) -> Phase:
    torch.manual_seed(0)
    return Phase("tiny", Tiny(), SCHEDULE, 4, tmp_path, SummaryWriter(str(tmp_path / "tb")),
                 ema_decay=0.9, checkpoint_minutes=0)


def test_a_stop_within_an_epoch_resumes_at_the_next_batch(tmp_path: Path) -> None:
    train, val = batches(), ImageBatches(batches().images, batches().labels, 16)
    whole = phase(tmp_path / "whole")
    whole.run(train, val, DistillationLoss(), FP32_CPU, False)

    class Killed(Exception):
        pass

    class StopsAfterSixSteps(ImageBatches):
        def epoch(self, number: int, start: int = 0):
            for batch in super().epoch(number, start):
                if number * 4 + start >= 6:
                    raise Killed
                start += 1
                yield batch

    stopped = phase(tmp_path / "stopped")
    killed = StopsAfterSixSteps(train.images, train.labels, 8, train.sampler)
    try:
        stopped.run(killed, val, DistillationLoss(), FP32_CPU, False)
    except Killed:
        pass
    # Saved after every step (checkpoint_minutes=0): the last save was within epoch 2.
    state = torch.load(stopped.last_path, weights_only=True)
    assert (state["epoch"], state["next_batch"]) == (1, 2) and len(state["history"]) == 1

    resumed = phase(tmp_path / "stopped")
    resumed.resume()
    assert (resumed.start_epoch, resumed.start_batch) == (1, 2)
    assert resumed.scheduler.last_epoch == 6
    resumed.run(train, val, DistillationLoss(), FP32_CPU, False)
    assert resumed.scheduler.last_epoch == whole.scheduler.last_epoch == 8
    assert [entry["epoch"] for entry in resumed.history] == [1, 2]
    assert {entry["chosen"] for entry in resumed.history} <= {"weights", "average"}
    assert set(resumed.history[-1]["val_bma_by_weights"]) == {"weights", "average"}
    # Chosen, within each epoch and over the phase, by BMA at the operating point.
    for entry in resumed.history:
        assert entry["val_operating_bma"] == max(entry["val_operating_bma_by_weights"].values())
        assert entry["val_bma"] == entry["val_bma_by_weights"][entry["chosen"]]
    assert resumed.best_score == max(entry["val_operating_bma"] for entry in resumed.history)
    assert resumed.best_path.exists()
    # The same draws, views and optimiser state: the resumed run ends where the whole one did.
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)
