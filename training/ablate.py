"""Short training runs that each isolate one design choice of the recipe, plus leave-one-source-out
runs (train without a clinic, test on all of its images) as the stand-in for clinics SKIN has never
seen. Nothing is shipped: each run writes into its own folder under --output.

Every run fine-tunes the same ImageNet EfficientNet-Lite0 (the teacher's network, trained as
train.py trains a teacher), on the same split and budget. These are the only weights here that have
never seen a skin image: a run warm-started from a release would carry what that release learned
from the left-out clinic, and the recipe it was trained with.

    python -m training.ablate
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

import settings
from training import train
from training.engine import predict
from training.metrics import balanced_accuracy
from training.mixed_precision import Precision, choose_precision
from training.models import build_teacher
from training.presets import evaluation_batches, training_batches
from training.report import by_source
from training.run_setup import image_size, keep_run_arguments, seed_everything
from training.shortcuts import circle_shift, circle_table
from training.splits import load_split
from training.teacher import fine_tune_teacher

FIGURES_FILE = "ablation.json"
ARCH = "efficientnet-lite0"
# The runs that are compared, as train.py's flags that set them apart.
VARIANTS = {
    "recipe": [],
    "no dermatoscope circles added": ["--vignette", "0"],
    "balanced by class only, not by source": ["--no-source-balance"],
    "no colour constancy": ["--no-colour-constancy"],
    "trained without BCN20000, tested on all of it": ["--held-out-source", "BCN20000"],
    "trained without HAM10000, tested on all of it": ["--held-out-source", "ham10000"],
    "trained without the ISIC archive, tested on all of it": ["--held-out-source", "ISIC archive (MSK and others)"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(path) for path in settings.DATA_DIRS])
    parser.add_argument("--output", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--report", type=Path, default=Path("docs/ablations.json"))
    parser.add_argument("--image-size", default="96x128")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-samples", type=int, default=4000)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                        help="run only these")
    return parser.parse_args(argv)


def run_variant(args: argparse.Namespace, name: str, flags: list[str], precision: Precision) -> dict:
    """Train one variant and return its validation and test figures. A finished variant is read
    back, not trained again, and one stopped midway resumes from its checkpoint, so `make ablate`
    may span sessions (delete --output to start over)."""
    folder = args.output / name.replace(", ", "_").replace(" ", "-")
    finished = folder / FIGURES_FILE
    if finished.is_file():
        return json.loads(finished.read_text())
    run = train.parse_args(["--data", *args.data, "--output", str(folder), "--teacher-arch", ARCH,
                            "--teacher-size", args.image_size, "--teacher-epochs", str(args.epochs),
                            "--epoch-samples", str(args.epoch_samples), "--seed", "0", "--resume",
                            # A variant is no release: the shipped version must not stop its resume.
                            "--version", "ablation", *flags])
    seed_everything(run.seed)
    folder.mkdir(parents=True, exist_ok=True)
    keep_run_arguments(run)
    samples, split, _ = load_split(run.data, run.seed, deduplicated=True)
    if run.held_out_source:
        split = split.leave_out([s.source == run.held_out_source for s in samples])
    batches = training_batches(samples, split.train, train.view_augment(run, run.teacher_size), run.batch_size,
                               run.epoch_samples, run.class_power, run.seed, run.source_balance)
    val = evaluation_batches(samples, split.val, run.teacher_size, run.batch_size * 2, "decode val")
    with SummaryWriter(log_dir=str(folder / "tensorboard")) as writer:
        model, report = fine_tune_teacher(run, batches, val, samples, split.val, precision, writer)
    val_logits, val_labels = predict(model, val, precision, run.colour_constancy)
    circle = circle_table(model, val.images, val_labels, val_logits, precision, run.colour_constancy)
    test = evaluation_batches(samples, split.test, run.teacher_size, run.batch_size * 2, "decode test")
    logits, labels = predict(model, test, precision, run.colour_constancy)
    sources = by_source(logits, labels, [samples[i].source for i in split.test])
    figures = {"flags": flags, "val_balanced_accuracy": report["val_balanced_accuracy"],
               "val_mel_calls_with_circle": circle, "val_circle_shift": circle_shift(circle),
               "test_balanced_accuracy": balanced_accuracy(labels.numpy(), logits.argmax(1).numpy()),
               "test_by_source": {source: {"images": entry["images"], "balanced_accuracy": entry["balanced_accuracy"],
                                           "mel_sensitivity": entry["sensitivity"]["MEL"]}
                                  for source, entry in sources.items()},
               "minutes": report["minutes"], "precision": precision.name}
    finished.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # Chosen once, so that every variant trains in the same precision whatever else the CPU is doing
    # when it starts.
    defaults = train.parse_args([])
    precision, speeds = choose_precision(args.precision, torch.device(defaults.device),
                                         lambda: build_teacher(ARCH, defaults.teacher_frozen_blocks),
                                         (defaults.batch_size, 3, *image_size(args.image_size)))
    print(f"precision {precision.name} {speeds}", flush=True)
    results = {name: run_variant(args, name, VARIANTS[name], precision) for name in args.variants}
    report = {"budget": {"network": f"{ARCH}, ImageNet weights", "epochs": args.epochs,
                         "images_per_epoch": args.epoch_samples, "image_size": args.image_size},
              "variants": results}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    sources = sorted({source for figures in results.values() for source in figures["test_by_source"]})
    print("| variant | val BMA | val MEL calls moved by a circle | test BMA | "
          + " | ".join(f"{source} BMA / MEL" for source in sources) + " |")
    for name, figures in results.items():
        cells = [f"{entry['balanced_accuracy']:.3f} / {entry['mel_sensitivity']:.3f}"
                 if (entry := figures["test_by_source"].get(source)) else "-" for source in sources]
        print(f"| {name} | {figures['val_balanced_accuracy']:.3f} | {figures['val_circle_shift']:.3f} | "
              f"{figures['test_balanced_accuracy']:.3f} | "
              + " | ".join(cells) + " |")
    return report


if __name__ == "__main__":
    main()
