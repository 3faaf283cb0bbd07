"""Train SkinResNet34 on a dermoscopy set, optionally distilled from a fine-tuned EfficientNet-Lite0,
then calibrate it, evaluate it once on the test split and write the release into model_store/.

    python -m training.train --data ../shared/data/ham10000 --epochs 8 --image-size 112 --teacher
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from handler.checkpoint import save_release
from handler.classes import CODES
from training.calibration import fit_temperature
from training.datasets import Sample, detect_layout, read_samples
from training.engine import predict
from training.losses import DistillationLoss, class_weights
from training.metrics import balanced_accuracy
from training.models import TEACHER_ARCH, build_student, build_teacher
from training.phase import Phase
from training.presets import CachedImages, load_images, train_augmentation, train_cache_size
from training.release import release_metadata
from training.report import build_report, write_report
from training.splits import Split, split_samples


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
                sampler: torch.utils.data.Sampler | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
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


def build_loaders(args: argparse.Namespace, samples: list[Sample], split: Split, device: torch.device
                  ) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (augmented, class-rebalanced), validation and test loaders over decoded image caches."""
    workers = args.workers if args.workers >= 0 else (4 if device.type == "cuda" else 0)

    def cached(indices: list[int], size: int, name: str, transform=None) -> CachedImages:
        images = load_images([samples[i].path for i in indices], size, desc=f"decode {name}")
        return CachedImages(images, torch.tensor([samples[i].label for i in indices]), transform)

    train_set = cached(split.train, train_cache_size(args.image_size), "train",
                       train_augmentation(args.image_size))
    sampler = balanced_sampler(train_set.labels, args.sampler_power,
                               args.epoch_samples or len(train_set), args.seed)
    return (make_loader(train_set, args.batch_size, workers, device, sampler),
            make_loader(cached(split.val, args.image_size, "val"), args.batch_size * 2, workers, device),
            make_loader(cached(split.test, args.image_size, "test"), args.batch_size * 2, workers, device))


def calibrate_and_test(model: torch.nn.Module, val_loader: DataLoader, test_loader: DataLoader,
                       device: torch.device) -> tuple[dict, float]:
    """Fit the temperature on validation, then score the test split once: (report, temperature)."""
    val_logits, val_labels = predict(model, val_loader, device)
    temperature = fit_temperature(val_logits, val_labels)
    test_logits, test_labels = predict(model, test_loader, device)
    return build_report(test_logits, test_labels, temperature) | {"split": "test"}, temperature


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    command = shlex.join([Path(sys.executable).name, "-m", "training.train", *(argv or sys.argv[1:])])
    commit = git_commit()
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.output.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(args.output / "tensorboard"))

    samples = read_samples(args.data)
    split = split_samples(samples, seed=args.seed)
    if args.limit:
        split = split.head(args.limit / len(samples))
    print(f"data: {args.data} ({detect_layout(args.data)}), {len(samples)} images; split {split.sizes()}",
          flush=True)

    train_loader, val_loader, test_loader = build_loaders(args, samples, split, device)
    print(f"decoded in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    train_labels = train_loader.dataset.labels
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

    report, temperature = calibrate_and_test(student, val_loader, test_loader, device)
    report["val_balanced_accuracy"] = student_phase.best_bma
    report["teacher"] = None
    if teacher is not None:
        teacher_logits, test_labels = predict(teacher, test_loader, device)
        report["teacher"] = {"arch": TEACHER_ARCH, "val_balanced_accuracy": teacher_phase.best_bma,
                             "test_balanced_accuracy": balanced_accuracy(
                                 test_labels.numpy(), teacher_logits.argmax(1).numpy())}
    metadata = release_metadata(
        args, samples, split, report, temperature, commit,
        training={"device": str(device), "epochs": len(student_phase.history),
                  "epochs_planned": args.epochs, "minutes": round(train_minutes, 1),
                  "minutes_budget": args.minutes or None,
                  "teacher": TEACHER_ARCH if teacher is not None else None,
                  "history": student_phase.history, "command": command})
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
