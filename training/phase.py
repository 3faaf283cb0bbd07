"""One model's training phase: optimiser, step-bounded schedule, a moving average of the weights,
per-epoch validation, best/last checkpoints, checkpoints within an epoch, and resume.

The best weights are those with the highest validation BMA at the operating point a release is
served at (logit biases fitted for the melanoma floor), the figure a release is shipped on: a
model's argmax BMA can rise while melanomas get harder to tell from nevi, and the biases then
cost it more than it gained.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.tensorboard import SummaryWriter

from training.decisions import MEL_FLOOR, choose_logit_bias
from training.engine import predict, train_one_epoch
from training.metrics import balanced_accuracy
from training.mixed_precision import Precision
from training.presets import ImageBatches
from training.report import by_source, share


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of the phase, then cosine decay to zero."""
    if progress < warmup:
        return (progress + 1e-3) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


@dataclass(frozen=True)
class Schedule:
    """How a phase steps: peak learning rate, epochs, the warm-up's share of them, weight decay."""

    lr: float
    epochs: int
    warmup: float
    weight_decay: float


def best_weights_path(output: Path, name: str) -> Path:
    """Where the phase called ``name`` keeps its best weights (raw or averaged, by validation BMA at
    the operating point)."""
    return output / f"{name}_best.pt"


class Phase:
    """One model's training: optimiser, schedule, per-epoch validation, best/last checkpoints.

    The schedule follows the steps done out of the planned ones, whatever the wall clock says, so a
    run split over several sessions ends as an uninterrupted one would. With
    ``ema_decay`` an exponential moving average of the weights is kept beside them, both are
    validated after each epoch, and the better one is the phase's best. ``mel_floor`` is the
    melanoma sensitivity the operating point holds. ``checkpoint_minutes``
    saves the run within an epoch too, and a resume continues from the batch after it.
    """

    def __init__(self, name: str, model: torch.nn.Module, schedule: Schedule, steps_per_epoch: int,
                 output: Path, writer: SummaryWriter, ema_decay: float = 0.0,
                 checkpoint_minutes: float = 10.0, mel_floor: float = MEL_FLOOR) -> None:
        self.name, self.model, self.epochs, self.writer = name, model, schedule.epochs, writer
        self.mel_floor = mel_floor
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = schedule.epochs * steps_per_epoch
        self.started = time.monotonic()
        # Fused: on the CPU torch's default AdamW loops over the tensors one by one, which costs
        # ResNet34 90 ms a step on 2 cores against 18 ms fused (`python -m training.speed`).
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay,
                                           fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(self.progress(step), schedule.warmup))
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
                    if ema_decay else None)
        self.checkpoint_seconds = checkpoint_minutes * 60
        self.last_path, self.best_path = output / f"{name}_last.pt", best_weights_path(output, name)
        self.start_epoch, self.start_batch, self.best_score, self.history = 0, 0, -1.0, []
        # Time spent up to the last checkpoint, carried over by a resume.
        self.seconds = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, step: int) -> float:
        return min(step / self.total_steps, 1.0)

    def save(self, epoch: int, next_batch: int) -> None:
        """The whole run state; ``next_batch`` is where a resume starts within ``epoch``."""
        self.seconds = self.elapsed()
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch, "next_batch": next_batch,
                 "best_operating_bma": self.best_score, "history": self.history, "elapsed": self.seconds,
                 "ema": self.ema.state_dict() if self.ema else None}
        partial = self.last_path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.last_path)  # a stop while saving leaves the previous checkpoint whole

    def resume(self) -> None:
        if not self.last_path.exists():
            return
        state = torch.load(self.last_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        # A checkpoint from before the phase chose by the operating point holds an argmax BMA,
        # which no operating-point BMA can be compared with: its best is chosen afresh.
        self.best_score, self.history = state.get("best_operating_bma", -1.0), state["history"]
        self.start_epoch, self.start_batch = state["epoch"], state.get("next_batch", 0)
        if self.start_batch >= self.steps_per_epoch:
            self.start_epoch, self.start_batch = self.start_epoch + 1, 0
        self.seconds = state["elapsed"]
        self.started = time.monotonic() - self.seconds
        print(f"[{self.name}] resumed at epoch {self.start_epoch + 1}, batch {self.start_batch} "
              f"(best val BMA at the operating point {self.best_score:.4f})", flush=True)

    def validate(self, model: torch.nn.Module, val_batches: ImageBatches, precision: Precision,
                 colour_constancy: bool, sources: list[str] | None) -> dict:
        """Validation BMA at argmax (``bma``) and at the operating point (``operating_bma``), and
        argmax BMA and melanoma sensitivity per source where ``sources`` are given."""
        logits, labels = predict(model, val_batches, precision, colour_constancy)
        per_source = {source: {"bma": figures["balanced_accuracy"], "mel": figures["sensitivity"]["MEL"]}
                      for source, figures in by_source(logits, labels, sources).items()} if sources else {}
        operating = choose_logit_bias(logits, labels, self.mel_floor)[1]["after"]["balanced_accuracy"]
        return {"bma": balanced_accuracy(labels.numpy(), logits.argmax(1).numpy()), "operating_bma": operating,
                "by_source": per_source}

    def run(self, train_batches: ImageBatches, val_batches: ImageBatches, criterion: torch.nn.Module,
            precision: Precision, colour_constancy: bool, mixup: float = 0.0,
            val_sources: list[str] | None = None) -> None:
        """Train until the planned steps are done, validating after each epoch (per source too,
        where ``val_sources`` names each validation image's)."""
        scaler = precision.grad_scaler()
        for epoch in range(self.start_epoch, self.epochs):
            first = self.start_batch if epoch == self.start_epoch else 0
            position = {"batch": first, "saved": time.monotonic()}

            def after_step(epoch: int = epoch, position: dict = position) -> None:
                position["batch"] += 1
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                if time.monotonic() - position["saved"] > self.checkpoint_seconds:
                    self.save(epoch, position["batch"])
                    position["saved"] = time.monotonic()

            stats = train_one_epoch(self.model, train_batches.epoch(epoch, first), criterion,
                                    self.optimizer, self.scheduler, precision, colour_constancy, mixup,
                                    scaler, desc=f"{self.name} {epoch + 1}/{self.epochs}", seed=epoch,
                                    after_step=after_step)
            candidates = {"weights": self.model} | ({"average": self.ema.module} if self.ema else {})
            validated = {kind: self.validate(model, val_batches, precision, colour_constancy, val_sources)
                         for kind, model in candidates.items()}
            scores = {kind: figures["operating_bma"] for kind, figures in validated.items()}
            argmax = {kind: figures["bma"] for kind, figures in validated.items()}
            kind = max(scores, key=scores.get)
            score = scores[kind]
            self.history.append({"epoch": epoch + 1, "loss": stats.loss, "val_bma": argmax[kind],
                                 "val_operating_bma": score, "chosen": kind, "val_bma_by_weights": argmax,
                                 "val_operating_bma_by_weights": scores,
                                 "val_by_source": validated[kind]["by_source"],
                                 "images_per_second": stats.images_per_second,
                                 "data_images_per_second": stats.data_images_per_second,
                                 "seconds": stats.seconds, "lr": self.scheduler.get_last_lr()[0]})
            self.writer.add_scalar(f"{self.name}/loss", stats.loss, epoch + 1)
            for name in scores:
                self.writer.add_scalar(f"{self.name}/val_bma_{name}", argmax[name], epoch + 1)
                self.writer.add_scalar(f"{self.name}/val_operating_bma_{name}", scores[name], epoch + 1)
            self.writer.add_scalar(f"{self.name}/lr", self.scheduler.get_last_lr()[0], epoch + 1)
            self.writer.add_scalar(f"{self.name}/images_per_second", stats.images_per_second, epoch + 1)
            improved = score > self.best_score
            if improved:
                self.best_score = score
                torch.save(candidates[kind].state_dict(), self.best_path)
            self.save(epoch, self.steps_per_epoch)
            print(f"[{self.name}] epoch {epoch + 1}/{self.epochs} {precision.name} loss {stats.loss:.4f} "
                  f"val BMA {', '.join(f'{k} {v:.4f}' for k, v in argmax.items())}; at the operating point "
                  f"{', '.join(f'{k} {v:.4f}' for k, v in scores.items())}"
                  f"{' (best)' if improved else ''} train {stats.images_per_second:.1f} "
                  f"img/s, data alone {stats.data_images_per_second:.0f} img/s, "
                  f"{stats.seconds / 60:.1f} min"
                  + "".join(f"; {source} BMA {figures['bma']:.3f} MEL {share(figures['mel'])}"
                            for source, figures in validated[kind]["by_source"].items()), flush=True)
        self.start_epoch, self.start_batch = self.epochs, 0

    def load_best(self) -> torch.nn.Module:
        self.model.load_state_dict(torch.load(self.best_path, map_location="cpu", weights_only=True))
        return self.model
