"""Train SkinResNet34 on one or more dermoscopy sets, optionally distilled from a fine-tuned
EfficientNet-Lite, then calibrate it, choose its referral threshold, evaluate it once on the test
split (overall and per source) and write the release into model_store/ if it beats the shipped one.

    python -m training.train --data ../shared/data/ham10000 ../shared/data/isic2019-84px \
        --image-size 96x128 --epochs 8 --teacher
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
from torch.utils.tensorboard import SummaryWriter

from handler.checkpoint import WEIGHTS_FILE, save_release
from handler.classes import CODES
from handler.cpus import CPU_FLAGS, cpu_info
from handler.preprocessing import input_shape
from training.calibration import fit_temperature
from training.datasets import Sample, read_folders
from training.engine import predict
from training.evaluate import shipped_val_bma
from training.losses import DistillationLoss, class_weights
from training.metrics import balanced_accuracy
from training.models import TEACHERS, build_student, build_teacher
from training.phase import Phase
from training.precision import Precision, choose_precision
from training.presets import BatchAugment, ImageBatches, load_images, train_cache_shape
from training.referral import CONCERNING, TARGET_SENSITIVITY, choose_threshold, referral_report
from training.release import release_metadata
from training.report import build_report, by_source, write_report
from training.splits import Split, split_folders

DEFAULT_DATA = [Path("../shared/data/ham10000"), Path("../shared/data/isic2019-84px")]


def image_size(text: str) -> tuple[int, int]:
    """``96x128`` (height x width) or ``112`` (a square)."""
    height, _, width = text.partition("x")
    return input_shape((int(height), int(width or height)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA,
                        help="data directories, each in any layout training.datasets reads; each is "
                             "split by lesion on its own")
    parser.add_argument("--output", type=Path, default=Path("runs/train"),
                        help="checkpoints and TensorBoard logs")
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--docs", type=Path, default=Path("docs"),
                        help="where the test report JSON and confusion plot go")
    parser.add_argument("--version", default="2.0", help="release version (the archive version)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--image-size", type=image_size, default=(96, 128),
                        help="network input, HEIGHTxWIDTH (dermoscopy's 4:3) or one number for a square")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="auto: time a few steps of each on this machine and keep the faster")
    parser.add_argument("--colour-constancy", action=argparse.BooleanOptionalAction, default=True,
                        help="Shades of Gray (p=6) before the network, in training and serving")
    parser.add_argument("--mixup", type=float, default=0.2, help="mixup Beta(a, a); 0 turns it off")
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
                        help="warm start: a SKIN release's weights, or a local torchvision resnet34 "
                             "ImageNet state dict (its fc is skipped)")
    parser.add_argument("--teacher", action=argparse.BooleanOptionalAction, default=False,
                        help="fine-tune an ImageNet EfficientNet-Lite and distil it into the ResNet34")
    parser.add_argument("--teacher-arch", choices=sorted(TEACHERS), default="efficientnet-lite2")
    parser.add_argument("--teacher-weights", type=Path, default=None,
                        help="a fine-tuned teacher's state dict to use instead of fine-tuning one")
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
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    parser.add_argument("--always-ship", action="store_true",
                        help="write the release even if the shipped one scores better on validation")
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


def balanced_sampler(labels: torch.Tensor, power: float, num_samples: int,
                     seed: int) -> torch.utils.data.WeightedRandomSampler:
    counts = torch.bincount(labels, minlength=len(CODES)).float().clamp(min=1)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(counts.pow(-power)[labels], num_samples,
                                                  replacement=True, generator=generator)


def to_device(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    model = model.to(precision.device)
    return model.to(memory_format=torch.channels_last) if precision.channels_last else model


def build_batches(args: argparse.Namespace, samples: list[Sample], split: Split
                  ) -> tuple[ImageBatches, ImageBatches, ImageBatches]:
    """Train (augmented, class-rebalanced), validation and test batches over in-memory caches."""
    def cached(indices: list[int], size: tuple[int, int], name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (load_images([samples[i].path for i in indices], size, desc=f"decode {name}"),
                torch.tensor([samples[i].label for i in indices]))

    train_images, train_labels = cached(split.train, train_cache_shape(args.image_size), "train")
    sampler = balanced_sampler(train_labels, args.sampler_power,
                               args.epoch_samples or len(train_labels), args.seed)
    augment = BatchAugment(args.image_size, seed=args.seed)
    return (ImageBatches(train_images, train_labels, args.batch_size, sampler, augment),
            ImageBatches(*cached(split.val, args.image_size, "val"), args.batch_size * 2),
            ImageBatches(*cached(split.test, args.image_size, "test"), args.batch_size * 2))


def calibrate_and_test(model: torch.nn.Module, val: ImageBatches, test: ImageBatches,
                       precision: Precision, colour_constancy: bool, test_sources: list[str]
                       ) -> tuple[dict, float, dict]:
    """Fit the temperature and the referral threshold on validation, then score the test split
    once: (report, temperature, referral)."""
    val_logits, val_labels = predict(model, val, precision, colour_constancy)
    temperature = fit_temperature(val_logits, val_labels)
    val_probabilities = torch.softmax(val_logits / temperature, dim=1).numpy()
    threshold = choose_threshold(val_labels.numpy(), val_probabilities)
    test_logits, test_labels = predict(model, test, precision, colour_constancy)
    test_probabilities = torch.softmax(test_logits / temperature, dim=1).numpy()
    flip_logits, _ = predict(model, val, precision, colour_constancy, flip=True)
    report = build_report(test_logits, test_labels, temperature) | {
        "split": "test", "by_source": by_source(test_logits, test_labels, test_sources),
        "flip_tta_val_balanced_accuracy": {
            "without": balanced_accuracy(val_labels.numpy(), val_logits.argmax(1).numpy()),
            "with": balanced_accuracy(val_labels.numpy(), flip_logits.argmax(1).numpy())}}
    referral = {"classes": [c for c, concerning in zip(CODES, CONCERNING) if concerning],
                "target_sensitivity": TARGET_SENSITIVITY, "threshold": threshold,
                "validation": referral_report(val_labels.numpy(), val_probabilities, threshold),
                "test": referral_report(test_labels.numpy(), test_probabilities, threshold)}
    return report, temperature, referral


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    command = shlex.join([Path(sys.executable).name, "-m", "training.train", *(argv or sys.argv[1:])])
    commit = git_commit()
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(args.output / "tensorboard"))

    samples, split = split_folders(read_folders(args.data), seed=args.seed)
    if args.limit:
        split = split.head(args.limit / len(samples))
    print(f"data: {', '.join(map(str, args.data))}: {len(samples)} images; split {split.sizes()}", flush=True)

    train_batches, val_batches, test_batches = build_batches(args, samples, split)
    print(f"decoded in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    cpu = cpu_info()
    precision, speeds = choose_precision(args.precision, torch.device(args.device), build_student,
                                         (args.batch_size, 3, *args.image_size))
    print(f"CPU {cpu['model']} ({' '.join(cpu['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}); "
          f"precision {precision.name}"
          + (f" (measured img/s: {', '.join(f'{k} {v:.1f}' for k, v in speeds.items())})" if speeds else ""),
          flush=True)
    counts = torch.bincount(train_batches.labels, minlength=len(CODES)).tolist()
    criterion = DistillationLoss(class_weights(counts, args.loss_power), args.kd_alpha,
                                 args.kd_temperature).to(precision.device)
    steps = len(train_batches)
    if steps == 0:
        raise ValueError(f"{len(train_batches.sampler)} training images per epoch make no batch of "
                         f"{args.batch_size}; raise --epoch-samples or lower --batch-size")
    cc = args.colour_constancy

    teacher, teacher_phase = None, None
    if args.teacher:
        teacher = to_device(build_teacher(args.teacher_arch), precision)
        if args.teacher_weights:
            teacher.load_state_dict(torch.load(args.teacher_weights, map_location="cpu", weights_only=True))
        else:
            teacher_phase = Phase("teacher", teacher, args, args.teacher_lr, args.teacher_epochs, steps,
                                  args.teacher_minutes, args.output, writer)
            if args.resume:
                teacher_phase.resume()
            teacher_phase.run(train_batches, val_batches, criterion, precision, cc, mixup=args.mixup)
            teacher = teacher_phase.load_best()
        teacher.eval()

    student = to_device(build_student(args.init), precision)
    # The student gets whatever is left of the overall budget.
    student_minutes = args.minutes - (time.monotonic() - started) / 60 if args.minutes else 0
    if args.minutes and student_minutes <= 0:
        raise RuntimeError(f"--minutes {args.minutes} left no time for the student")
    student_phase = Phase("student", student, args, args.lr, args.epochs, steps, student_minutes,
                          args.output, writer)
    if args.resume:
        student_phase.resume()
    student_phase.run(train_batches, val_batches, criterion, precision, cc, teacher, args.mixup)
    student = student_phase.load_best()
    # The phases' own clocks, which a resume carries over, so a stopped run reports its whole time.
    train_minutes = sum(phase.seconds for phase in (teacher_phase, student_phase) if phase) / 60

    test_sources = [samples[i].source for i in split.test]
    # Calibrate and score in the precision the handler serves in, not the one training chose.
    served = Precision("fp16" if precision.device.type == "cuda" else "fp32", precision.device)
    student = student.to(memory_format=torch.contiguous_format)
    report, temperature, referral = calibrate_and_test(student, val_batches, test_batches, served, cc,
                                                       test_sources)
    report["val_balanced_accuracy"] = student_phase.best_bma
    report["teacher"] = None
    if teacher is not None:
        val_logits, val_labels = predict(teacher, val_batches, precision, cc)
        teacher_logits, test_labels = predict(teacher, test_batches, precision, cc)
        report["teacher"] = {
            "arch": args.teacher_arch,
            "val_balanced_accuracy": balanced_accuracy(val_labels.numpy(), val_logits.argmax(1).numpy()),
            "test_balanced_accuracy": balanced_accuracy(test_labels.numpy(), teacher_logits.argmax(1).numpy()),
            "test_by_source": by_source(teacher_logits, test_labels, test_sources)}
    metadata = release_metadata(
        args, samples, split, report, temperature, referral, commit,
        training={"device": str(precision.device), "precision": precision.name,
                  "precision_measured_images_per_second": speeds, "cpu": cpu,
                  "epochs": len(student_phase.history),
                  "epochs_planned": args.epochs, "minutes": round(train_minutes, 1),
                  "minutes_budget": args.minutes or None,
                  "teacher": args.teacher_arch if teacher is not None else None,
                  "history": student_phase.history, "command": command})
    summary = {"val_bma": student_phase.best_bma, "test_bma": report["balanced_accuracy"],
               "test_bma_by_source": {k: v["balanced_accuracy"] for k, v in report["by_source"].items()},
               "mel_sensitivity": report["per_class"]["MEL"]["sensitivity"],
               "referral": {k: referral["test"][k] for k in ("threshold", "sensitivity", "specificity", "auroc")},
               "teacher": report.get("teacher"), "temperature": temperature,
               "ece": [report["ece_before_calibration"], report["ece_after_calibration"]],
               "flip_tta_val_bma": report["flip_tta_val_balanced_accuracy"],
               "minutes": round((time.monotonic() - started) / 60, 1)}
    (args.output / "summary.json").write_text(json.dumps(summary | {"metadata": metadata}, indent=2) + "\n")
    shipped = shipped_val_bma(args.model_store / WEIGHTS_FILE, samples, split.val)
    summary["shipped_val_bma"] = shipped
    if shipped is not None and shipped >= student_phase.best_bma and not args.always_ship:
        print(f"not shipped: the release in {args.model_store} scores validation BMA {shipped:.4f} on this "
              f"split, this run {student_phase.best_bma:.4f}", flush=True)
    else:
        save_release(student.float().cpu().state_dict(), metadata, args.model_store)
        write_report(report | {"release": {k: metadata[k] for k in ("name", "version", "input_size", "commit")},
                               "referral": referral, "training": metadata["training"]},
                     args.docs / "model_report.json", args.docs / "confusion_matrix.png",
                     f"SkinResNet34 {args.version}, test split (BMA {report['balanced_accuracy']:.3f})")
    writer.close()
    print(json.dumps(summary, indent=2), flush=True)
    return metadata


if __name__ == "__main__":
    main()
