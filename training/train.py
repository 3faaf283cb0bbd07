"""Train SkinResNet34 on a dermoscopy set, optionally distilled from a fine-tuned EfficientNet-Lite0,
then calibrate it, evaluate it once on the test split and write the release into model_store/.

    python -m training.train --data ../shared/data/ham10000 --epochs 8 --image-size 112 --teacher
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from handler.checkpoint import save_release
from handler.classes import CODES
from handler.preprocessing import MEAN, STD
from training.calibration import fit_temperature
from training.datasets import class_counts, detect_layout, read_samples
from training.engine import predict, train_one_epoch
from training.losses import DistillationLoss, class_weights
from training.metrics import balanced_accuracy
from training.models import TEACHER_ARCH, build_student, build_teacher
from training.presets import CachedImages, load_images, train_augmentation, train_cache_size
from training.report import build_report, write_report
from training.splits import split_samples

RELEASE_NAME = "skin"
RELEASE_ARCH = "resnet34"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"),
                        help="data directory in any layout training.datasets reads")
    parser.add_argument("--output", type=Path, default=Path("runs/train"),
                        help="checkpoints and TensorBoard logs")
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--docs", type=Path, default=Path("docs"),
                        help="where the test report JSON and confusion plot go")
    parser.add_argument("--version", default="1.0", help="release version (the archive version)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="fraction of each phase spent warming the learning rate up")
    parser.add_argument("--epoch-samples", type=int, default=0,
                        help="images drawn per epoch (0: the size of the training split)")
    parser.add_argument("--sampler-power", type=float, default=0.5,
                        help="draw images with probability ∝ class_count^-p (0: natural, 1: balanced)")
    parser.add_argument("--loss-power", type=float, default=0.5,
                        help="weight the loss by class_count^-p; with --sampler-power summing to 1 "
                             "the classes count equally in expectation")
    parser.add_argument("--init", type=Path, default=None,
                        help="local torchvision resnet34 ImageNet state dict (fc is skipped)")
    parser.add_argument("--teacher", action=argparse.BooleanOptionalAction, default=False,
                        help=f"fine-tune an ImageNet {TEACHER_ARCH} and distil it into the ResNet34")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-lr", type=float, default=1e-3)
    parser.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation term")
    parser.add_argument("--kd-temperature", type=float, default=2.0)
    parser.add_argument("--minutes", type=float, default=0,
                        help="wall-clock budget for all training (teacher included; 0: none). The "
                             "learning-rate schedule follows whichever of epochs or time runs out "
                             "first, so a slow or shared machine still ends with an annealed model")
    parser.add_argument("--teacher-minutes", type=float, default=0,
                        help="wall-clock budget of the teacher's fine-tune (0: none)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only this many images (stratified by the split); for smoke runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1: auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    return parser.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int, device: torch.device,
                sampler: torch.utils.data.Sampler | None = None) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                                       num_workers=workers, pin_memory=device.type == "cuda",
                                       persistent_workers=workers > 0, drop_last=sampler is not None)


def balanced_sampler(labels: torch.Tensor, power: float, num_samples: int,
                     seed: int) -> torch.utils.data.WeightedRandomSampler:
    counts = torch.bincount(labels, minlength=len(CODES)).float().clamp(min=1)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(counts.pow(-power)[labels], num_samples,
                                                  replacement=True, generator=generator)


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device``; channels_last on CUDA, where convolutions run faster in it."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


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
        state = torch.load(self.last_path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.best_bma, self.history = state["epoch"] + 1, state["best_bma"], state["history"]
        self.duration, self.started = state["duration"], time.monotonic() - state["elapsed"]
        print(f"[{self.name}] resumed after epoch {state['epoch']} (best val BMA {self.best_bma:.4f})")

    def run(self, train_loader, val_loader, criterion, device, teacher=None) -> None:
        deadline = self.started + self.duration if self.duration else None
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
        for epoch in range(self.start_epoch, self.epochs):
            if self.progress(self.scheduler.last_epoch) >= 1:
                break
            stats = train_one_epoch(self.model, train_loader, criterion, self.optimizer, self.scheduler,
                                    device, teacher, deadline, scaler,
                                    desc=f"{self.name} {epoch + 1}/{self.epochs}")
            logits, labels = predict(self.model, val_loader, device)
            bma = balanced_accuracy(labels.numpy(), logits.argmax(1).numpy())
            self.history.append({"epoch": epoch + 1, "loss": stats.loss, "val_bma": bma,
                                 "images_per_second": stats.images_per_second, "seconds": stats.seconds,
                                 "lr": self.scheduler.get_last_lr()[0]})
            self.writer.add_scalar(f"{self.name}/loss", stats.loss, epoch + 1)
            self.writer.add_scalar(f"{self.name}/val_bma", bma, epoch + 1)
            self.writer.add_scalar(f"{self.name}/lr", self.scheduler.get_last_lr()[0], epoch + 1)
            self.writer.add_scalar(f"{self.name}/images_per_second", stats.images_per_second, epoch + 1)
            improved = bma > self.best_bma
            if improved:
                self.best_bma = bma
                torch.save(self.model.state_dict(), self.best_path)
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "epoch": epoch,
                        "best_bma": self.best_bma, "history": self.history,
                        "duration": self.duration, "elapsed": self.elapsed()}, self.last_path)
            print(f"[{self.name}] epoch {epoch + 1}/{self.epochs} loss {stats.loss:.4f} val BMA {bma:.4f}"
                  f"{' (best)' if improved else ''} {stats.images_per_second:.1f} img/s "
                  f"{stats.seconds / 60:.1f} min", flush=True)
            if stats.stopped_early:
                print(f"[{self.name}] time budget reached; stopping after epoch {epoch + 1}", flush=True)
                break

    def load_best(self) -> torch.nn.Module:
        self.model.load_state_dict(torch.load(self.best_path, map_location="cpu", weights_only=True))
        return self.model


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    command = shlex.join([Path(sys.executable).name, "-m", "training.train", *(argv or sys.argv[1:])])
    commit = git_commit()
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    workers = args.workers if args.workers >= 0 else (4 if device.type == "cuda" else 0)
    args.output.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(args.output / "tensorboard"))

    samples = read_samples(args.data)
    split = split_samples(samples, seed=args.seed)
    if args.limit:
        split = split.head(args.limit / len(samples))
    print(f"data: {args.data} ({detect_layout(args.data)}), {len(samples)} images; split {split.sizes()}",
          flush=True)

    def cached(indices: list[int], size: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = load_images([samples[i].path for i in indices], size, desc=f"decode {name}")
        return images, torch.tensor([samples[i].label for i in indices])

    train_images, train_labels = cached(split.train, train_cache_size(args.image_size), "train")
    val_set = CachedImages(*cached(split.val, args.image_size, "val"))
    test_set = CachedImages(*cached(split.test, args.image_size, "test"))
    print(f"decoded in {(time.monotonic() - started) / 60:.1f} min", flush=True)

    train_set = CachedImages(train_images, train_labels, train_augmentation(args.image_size))
    epoch_samples = args.epoch_samples or len(train_set)
    sampler = balanced_sampler(train_labels, args.sampler_power, epoch_samples, args.seed)
    train_loader = make_loader(train_set, args.batch_size, workers, device, sampler)
    val_loader = make_loader(val_set, args.batch_size * 2, workers, device)
    test_loader = make_loader(test_set, args.batch_size * 2, workers, device)
    counts = torch.bincount(train_labels, minlength=len(CODES)).tolist()
    criterion = DistillationLoss(class_weights(counts, args.loss_power), args.kd_alpha,
                                 args.kd_temperature).to(device)
    steps = len(train_loader)

    teacher, teacher_phase = None, None
    if args.teacher:
        teacher_phase = Phase("teacher", to_device(build_teacher(), device), args, args.teacher_lr,
                              args.teacher_epochs, steps, args.teacher_minutes, args.output, writer)
        if args.resume:
            teacher_phase.resume()
        teacher_phase.run(train_loader, val_loader, criterion, device)
        teacher = teacher_phase.load_best().eval()

    student = to_device(build_student(args.init), device)
    # The student gets whatever is left of the overall budget.
    student_minutes = args.minutes - (time.monotonic() - started) / 60 if args.minutes else 0
    if args.minutes and student_minutes <= 0:
        raise RuntimeError(f"--minutes {args.minutes} left no time for the student")
    student_phase = Phase("student", student, args, args.lr, args.epochs, steps, student_minutes,
                          args.output, writer)
    if args.resume:
        student_phase.resume()
    student_phase.run(train_loader, val_loader, criterion, device, teacher)
    student = student_phase.load_best()
    train_minutes = (time.monotonic() - started) / 60

    val_logits, val_labels = predict(student, val_loader, device)
    temperature = fit_temperature(val_logits, val_labels)
    test_logits, test_labels = predict(student, test_loader, device)
    report = build_report(test_logits, test_labels, temperature)
    report["split"] = "test"
    report["val_balanced_accuracy"] = student_phase.best_bma
    if teacher is not None:
        teacher_test_logits, _ = predict(teacher, test_loader, device)
        report["teacher"] = {"arch": TEACHER_ARCH, "val_balanced_accuracy": teacher_phase.best_bma,
                             "test_balanced_accuracy": balanced_accuracy(
                                 test_labels.numpy(), teacher_test_logits.argmax(1).numpy())}
    speeds = [entry["images_per_second"] for entry in student_phase.history]
    metadata = {
        "name": RELEASE_NAME,
        "version": args.version,
        "arch": RELEASE_ARCH,
        "classes": list(CODES),
        "input_size": args.image_size,
        "mean": list(MEAN),
        "std": list(STD),
        "temperature": temperature,
        "data": {"description": f"{args.data.name} ({detect_layout(args.data)} layout)",
                 "images": len(samples), "lesions": len({s.lesion_id for s in samples}),
                 "counts": class_counts(samples)},
        "split": {"description": "grouped by lesion_id, stratified by class (StratifiedGroupKFold), "
                                 "about 70/15/15 train/val/test",
                  "seed": args.seed, "sizes": split.sizes()},
        "metrics": {key: report[key] for key in ("balanced_accuracy", "accuracy", "per_class", "auc",
                                                  "ece_before_calibration", "ece_after_calibration")}
                   | {"split": "test", "val_balanced_accuracy": student_phase.best_bma,
                      "teacher": report.get("teacher")},
        "training": {"device": str(device), "epochs": len(student_phase.history),
                     "epochs_planned": args.epochs, "image_size": args.image_size,
                     "batch_size": args.batch_size, "minutes": round(train_minutes, 1),
                     "minutes_budget": args.minutes or None,
                     "images_per_second": round(float(np.mean(speeds)), 1) if speeds else None,
                     "teacher": TEACHER_ARCH if teacher is not None else None,
                     "history": student_phase.history, "command": command},
        "commit": commit,
    }
    save_release(student.float().cpu().state_dict(), metadata, args.model_store)
    write_report(report | {"release": {k: metadata[k] for k in ("name", "version", "input_size", "commit")},
                           "training": metadata["training"]},
                 args.docs / "model_report.json", args.docs / "confusion_matrix.png",
                 f"SkinResNet34 {args.version}, test split (BMA {report['balanced_accuracy']:.3f})")
    writer.close()
    print(json.dumps({"test_bma": report["balanced_accuracy"], "val_bma": student_phase.best_bma,
                      "teacher": report.get("teacher"), "temperature": temperature,
                      "ece": [report["ece_before_calibration"], report["ece_after_calibration"]],
                      "minutes": round((time.monotonic() - started) / 60, 1)}, indent=2), flush=True)
    return metadata


if __name__ == "__main__":
    main()
