"""Short training runs that each isolate one design choice of the release (colour constancy, the
teacher, the input resolution), all from the same warm start, split and budget, scored on the same validation and test
images. Nothing is shipped: each run writes into its own folder under --output.

    python -m training.ablate --teacher-weights runs/cpu_run/teacher_best.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from training import train

# The runs that are compared, as the training flags that set them apart.
VARIANTS = {
    "colour constancy, no teacher": [],
    "no colour constancy, no teacher": ["--no-colour-constancy"],
    "colour constancy, teacher": ["--teacher", "--teacher-weights", "{teacher}"],
    # HAM's native 150x200 against the 96x128 that sits near the other collections' 84 px.
    "colour constancy, no teacher, 150x200": ["--image-size", "150x200"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(path) for path in train.DEFAULT_DATA])
    parser.add_argument("--teacher-weights", type=Path, required=True,
                        help="a fine-tuned teacher (the main run's teacher_best.pt), so the teacher "
                             "comparison costs one student run and not a fine-tune")
    parser.add_argument("--teacher-arch", default="efficientnet-lite2", help="the teacher-weights' architecture")
    parser.add_argument("--init", type=Path, default=Path("runs/init-1.0.pt"))
    parser.add_argument("--output", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--report", type=Path, default=Path("docs/ablations.json"))
    parser.add_argument("--image-size", default="96x128")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-samples", type=int, default=2500)
    return parser.parse_args(argv)


def run_variant(args: argparse.Namespace, name: str, flags: list[str]) -> dict:
    """Train one variant and return its validation and test figures."""
    folder = args.output / name.replace(", ", "_").replace(" ", "-")
    extra = [flag.format(teacher=args.teacher_weights) for flag in flags]
    argv = ["--data", *args.data, "--output", str(folder), "--model-store", str(folder / "release"),
            "--docs", str(folder / "docs"), "--image-size", args.image_size, "--precision", "auto",
            "--batch-size", "32", "--epochs", str(args.epochs), "--epoch-samples", str(args.epoch_samples),
            "--lr", "1e-3", "--mixup", "0.2", "--init", str(args.init), "--seed", "0",
            "--teacher-arch", args.teacher_arch, "--always-ship",
            *extra]
    metadata = train.main(argv)
    metrics = metadata["metrics"]
    return {"flags": extra, "val_balanced_accuracy": metrics["val_balanced_accuracy"],
            "test_balanced_accuracy": metrics["balanced_accuracy"],
            "test_balanced_accuracy_by_source": {source: figures["balanced_accuracy"]
                                                 for source, figures in metrics["by_source"].items()},
            "test_mel_sensitivity": metrics["per_class"]["MEL"]["sensitivity"]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = {name: run_variant(args, name, flags) for name, flags in VARIANTS.items()}
    report = {"budget": {"epochs": args.epochs, "images_per_epoch": args.epoch_samples,
                         "image_size": args.image_size, "init": str(args.init)},
              "variants": results}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print("| variant | val BMA | test BMA | test MEL sensitivity |")
    print("|---|---:|---:|---:|")
    for name, figures in results.items():
        print(f"| {name} | {figures['val_balanced_accuracy']:.3f} | {figures['test_balanced_accuracy']:.3f} "
              f"| {figures['test_mel_sensitivity']:.3f} |")
    return report


if __name__ == "__main__":
    main()
