"""Fine-tune an ImageNet EfficientNet-Lite as the teacher that the served ResNet34 is distilled from.

    python -m training.teacher --output RUN --arch efficientnet-lite0 --image-size 150x200 --epochs 10

It trains on the same deduplicated, lesion-grouped split as the student, with the same
augmentation (circle, zoom, degradation) and the same class-and-source rebalancing, and is chosen on
validation. Resumable within an epoch (``--resume``), so it can run across several sessions. Writes
RUN/teacher_best.pt and RUN/teacher_report.json (validation BMA, per-source sensitivities).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from handler.cpus import cpu_info
from training.datasets import Sample
from training.engine import predict
from training.losses import DistillationLoss, class_weights
from training.metrics import balanced_accuracy
from training.models import TEACHERS, build_teacher
from training.phase import Phase
from training.precision import Precision, choose_precision
from training.presets import ImageBatches, evaluation_batches, training_batches
from training.report import by_source
from training.splits import Split, load_split
from training.train import DEFAULT_DATA, image_size, seed_everything, to_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, required=True, help="the run's folder")
    parser.add_argument("--arch", choices=sorted(TEACHERS), default="efficientnet-lite0")
    parser.add_argument("--image-size", type=image_size, default=(150, 200))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-samples", type=int, default=0, help="0: the training split's size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.05)
    parser.add_argument("--mixup", type=float, default=0.2)
    parser.add_argument("--class-power", type=float, default=0.5,
                        help="draw each class in proportion to count^(1-p), weight its loss by count^-p")
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--checkpoint-minutes", type=float, default=10)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--limit", type=int, default=0, help="only this many images; for smoke runs")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


def teacher_report(model: torch.nn.Module, arch: str, val: ImageBatches, samples: list[Sample],
                   split: Split, precision: Precision) -> dict:
    """Validation BMA, overall and per source, with per-class sensitivities (MEL's among them)."""
    logits, labels = predict(model, val, precision, colour_constancy=True)
    return {"arch": arch, "val_balanced_accuracy": balanced_accuracy(labels.numpy(), logits.argmax(1).numpy()),
            "val_by_source": by_source(logits, labels, [samples[i].source for i in split.val])}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    samples, split, dedupe = load_split(args.data, args.seed, deduplicated=True)
    if args.limit:
        split = split.head(args.limit / len(samples))
    print(f"{len(samples)} images after dropping copies ({dedupe.as_dict()}); split {split.sizes()}", flush=True)
    train = training_batches(samples, split.train, args.image_size, args.batch_size, args.epoch_samples,
                             args.class_power, args.seed)
    val = evaluation_batches(samples, split.val, args.image_size, args.batch_size * 2, "decode val")
    precision, speeds = choose_precision(args.precision, torch.device(args.device),
                                         lambda: build_teacher(args.arch),
                                         (args.batch_size, 3, *args.image_size))
    print(f"CPU {cpu_info()['model']}; precision {precision.name} {speeds}", flush=True)
    counts = torch.bincount(train.labels, minlength=8).tolist()
    criterion = DistillationLoss(class_weights(counts, args.class_power)).to(precision.device)
    teacher = to_device(build_teacher(args.arch), precision)
    phase = Phase("teacher", teacher, args, args.lr, args.epochs, len(train), 0, args.output,
                  SummaryWriter(log_dir=str(args.output / "tensorboard")), args.ema_decay,
                  args.checkpoint_minutes)
    if args.resume:
        phase.resume()
    phase.run(train, val, criterion, precision, True, mixup=args.mixup)
    report = teacher_report(phase.load_best().eval(), args.arch, val, samples, split, precision)
    report |= {"image_size": list(args.image_size), "epochs": args.epochs, "precision": precision.name,
               "history": phase.history, "minutes": round(phase.seconds / 60, 1), "dedupe": dedupe.as_dict()}
    (args.output / "teacher_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("arch", "val_balanced_accuracy")}
                     | {"val_mel_sensitivity_by_source": {s: v["sensitivity"]["MEL"]
                                                          for s, v in report["val_by_source"].items()}}),
          flush=True)
    return report


if __name__ == "__main__":
    main()
