"""One model's training phase: optimiser, time- or step-bounded schedule, per-epoch validation,
best/last checkpoints and resume. train.py runs one phase for the teacher and one for the student.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from training.engine import predict, train_one_epoch
from training.metrics import balanced_accuracy
from training.precision import Precision
from training.presets import ImageBatches


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of the phase, then cosine decay to zero."""
    if progress < warmup:
        return (progress + 1e-3) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


class Phase:
    """One model's training: optimiser, schedule, per-epoch validation, best/last checkpoints.

    Progress is the larger of steps done / planned steps and time spent / ``minutes``, and the
    schedule and the stopping rule both follow it.
    """

    def __init__(self, name: str, model: torch.nn.Module, args: argparse.Namespace, lr: float,
                 epochs: int, steps_per_epoch: int, minutes: float, output: Path,
                 writer: SummaryWriter) -> None:
        self.name, self.model, self.epochs, self.writer = name, model, epochs, writer
        self.total_steps = epochs * steps_per_epoch
        self.duration = minutes * 60 if minutes > 0 else None
        self.started = time.monotonic()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(self.progress(step), args.warmup))
        self.last_path, self.best_path = output / f"{name}_last.pt", output / f"{name}_best.pt"
        self.start_epoch, self.best_bma, self.history = 0, -1.0, []
        # Time spent up to the last finished epoch, carried over by a resume.
        self.seconds = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, step: int) -> float:
        done = step / self.total_steps
        if self.duration:
            done = max(done, self.elapsed() / self.duration)
        return min(done, 1.0)

    def resume(self) -> None:
        if not self.last_path.exists():
            return
        state = torch.load(self.last_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.best_bma, self.history = state["epoch"] + 1, state["best_bma"], state["history"]
        self.duration, self.seconds = state["duration"], state["elapsed"]
        self.started = time.monotonic() - self.seconds
        print(f"[{self.name}] resumed after epoch {state['epoch']} (best val BMA {self.best_bma:.4f})")

    def run(self, train_batches: ImageBatches, val_batches: ImageBatches, criterion: torch.nn.Module,
            precision: Precision, colour_constancy: bool, teacher: torch.nn.Module | None = None,
            mixup: float = 0.0) -> None:
        """Train until the planned epochs or the time budget run out, validating after each epoch."""
        deadline = self.started + self.duration if self.duration else None
        scaler = precision.grad_scaler()
        for epoch in range(self.start_epoch, self.epochs):
            if self.progress(self.scheduler.last_epoch) >= 1:
                break
            stats = train_one_epoch(self.model, train_batches, criterion, self.optimizer, self.scheduler,
                                    precision, colour_constancy, teacher, mixup, deadline, scaler,
                                    desc=f"{self.name} {epoch + 1}/{self.epochs}", seed=epoch)
            logits, labels = predict(self.model, val_batches, precision, colour_constancy)
            bma = balanced_accuracy(labels.numpy(), logits.argmax(1).numpy())
            self.history.append({"epoch": epoch + 1, "loss": stats.loss, "val_bma": bma,
                                 "images_per_second": stats.images_per_second,
                                 "data_images_per_second": stats.data_images_per_second,
                                 "seconds": stats.seconds, "lr": self.scheduler.get_last_lr()[0]})
            self.writer.add_scalar(f"{self.name}/loss", stats.loss, epoch + 1)
            self.writer.add_scalar(f"{self.name}/val_bma", bma, epoch + 1)
            self.writer.add_scalar(f"{self.name}/lr", self.scheduler.get_last_lr()[0], epoch + 1)
            self.writer.add_scalar(f"{self.name}/images_per_second", stats.images_per_second, epoch + 1)
            self.seconds = self.elapsed()
            improved = bma > self.best_bma
            if improved:
                self.best_bma = bma
                torch.save(self.model.state_dict(), self.best_path)
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "epoch": epoch,
                        "best_bma": self.best_bma, "history": self.history,
                        "duration": self.duration, "elapsed": self.seconds}, self.last_path)
            print(f"[{self.name}] epoch {epoch + 1}/{self.epochs} {precision.name} loss {stats.loss:.4f} "
                  f"val BMA {bma:.4f}{' (best)' if improved else ''} train {stats.images_per_second:.1f} "
                  f"img/s, data alone {stats.data_images_per_second:.0f} img/s, "
                  f"{stats.seconds / 60:.1f} min", flush=True)
            if stats.stopped_early:
                print(f"[{self.name}] time budget reached; stopping after epoch {epoch + 1}", flush=True)
                break

    def load_best(self) -> torch.nn.Module:
        self.model.load_state_dict(torch.load(self.best_path, map_location="cpu", weights_only=True))
        return self.model
