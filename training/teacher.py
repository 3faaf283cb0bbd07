"""The teacher that the served ResNet34 is distilled from: an ImageNet EfficientNet-Lite fine-tuned
at a higher resolution than the student, on the same deduplicated, lesion-grouped split, with the
same augmentation (circle, zoom, degradation) and the same class-and-source rebalancing.

train.py runs it as the first stage of a release; it is chosen on validation and resumes within an
epoch, so it can run across several sessions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from contract.classes import NUM_CLASSES
from training.datasets import Sample
from training.decisions import operating_point_figures
from training.engine import predict
from training.losses import DistillationLoss, class_weights
from training.metrics import balanced_accuracy
from training.mixed_precision import Precision
from training.models import build_teacher
from training.phase import Phase, Schedule, best_weights_path
from training.presets import ImageBatches
from training.report import by_source, share
from training.run_setup import to_device

REPORT_FILE = "teacher_report.json"
PHASE = "teacher"


def teacher_weights(run: Path) -> Path:
    """A run's fine-tuned teacher (its best weights on validation)."""
    return best_weights_path(run, PHASE)


def teacher_report(model: torch.nn.Module, arch: str, val: ImageBatches, val_sources: list[str],
                   precision: Precision, colour_constancy: bool, mel_floor: float) -> dict:
    """``logits_report`` of the model's answers on the validation batches."""
    logits, labels = predict(model, val, precision, colour_constancy)
    return logits_report(logits, labels, arch, val_sources, mel_floor)


def logits_report(logits: torch.Tensor, labels: torch.Tensor, arch: str, val_sources: list[str],
                  mel_floor: float) -> dict:
    """Validation BMA, overall and per source, with per-class sensitivities (MEL's among them); and
    ``operating_point``: the figures with the logit biases a release of it would get, which are what
    the shipped release is compared on."""
    return {"arch": arch, "val_balanced_accuracy": balanced_accuracy(labels.numpy(), logits.argmax(1).numpy()),
            "val_by_source": by_source(logits, labels, val_sources),
            "operating_point": operating_point_figures(logits, labels, val_sources, mel_floor)}


def fine_tune_teacher(args: argparse.Namespace, train: ImageBatches, val: ImageBatches,
                      samples: list[Sample], val_indices: list[int], precision: Precision,
                      writer: SummaryWriter) -> tuple[torch.nn.Module, dict]:
    """The teacher's best weights (raw or averaged, by validation BMA at the operating point) and its
    report, continuing a stopped fine-tune in ``args.output`` when ``args.resume``."""
    counts = torch.bincount(train.labels, minlength=NUM_CLASSES).tolist()
    criterion = DistillationLoss(class_weights(counts, args.class_power)).to(precision.device)
    teacher = to_device(build_teacher(args.teacher_arch, args.teacher_frozen_blocks), precision)
    phase = Phase(PHASE, teacher, Schedule(args.teacher_lr, args.teacher_epochs, args.warmup, args.weight_decay),
                  len(train), args.output, writer, args.teacher_ema_decay, args.checkpoint_minutes,
                  args.mel_floor)
    if args.resume:
        phase.resume()
    val_sources = [samples[i].source for i in val_indices]
    phase.run(train, val, criterion, precision, args.colour_constancy, args.mixup, val_sources)
    teacher = phase.load_best().eval()
    report = teacher_report(teacher, args.teacher_arch, val, val_sources, precision, args.colour_constancy,
                            args.mel_floor)
    report |= {"image_size": list(args.teacher_size), "epochs": args.teacher_epochs,
               "precision": precision.name, "minutes": round(phase.seconds / 60, 1), "history": phase.history}
    (Path(args.output) / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    mel = ", ".join(f"{source} {share(figures['sensitivity']['MEL'])}"
                    for source, figures in report["val_by_source"].items())
    print(f"[teacher] {args.teacher_arch}: validation BMA {report['val_balanced_accuracy']:.4f}, MEL {mel}; "
          f"with a release's logit biases {report['operating_point']}", flush=True)
    return teacher, report
