"""Short training runs that each isolate one design choice of the release, all from the same warm
start, split and budget, scored on the same validation and test images, plus leave-one-source-out
runs (train without a clinic, test on all of it) as the stand-in for clinics SKIN has never seen.
Nothing is shipped: each run writes into its own folder under --output.

    python -m training.ablate --soft-targets RUN/soft_targets.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import settings
from handler.checkpoint import METADATA_FILE, load_metadata
from training import train

# The runs that are compared, as the training flags that set them apart. Labels alone (no teacher)
# unless a run says otherwise, so that a variant costs a short student run and no teacher passes.
VARIANTS = {
    "recipe, labels alone": [],
    "no dermatoscope circles added": ["--vignette", "0"],
    "balanced by class only, not by source": ["--no-source-balance"],
    "no colour constancy": ["--no-colour-constancy"],
    "recipe, distilled from the run's teacher": ["--kd-alpha", "0.5", "--soft-targets", "{soft_targets}"],
    "trained without BCN20000, tested on all of it": ["--held-out-source", "BCN20000"],
    "trained without HAM10000, tested on all of it": ["--held-out-source", "ham10000"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(path) for path in settings.DATA_DIRS])
    parser.add_argument("--soft-targets", type=Path, default=None,
                        help="the main run's soft targets (RUN/soft_targets.pt), so the teacher "
                             "comparison costs one student run and no teacher passes; without them "
                             "the variants that distil are left out")
    parser.add_argument("--init", type=Path, default=Path("runs/init-2.0.pt"))
    parser.add_argument("--output", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--report", type=Path, default=Path("docs/ablations.json"))
    parser.add_argument("--image-size", default="96x128")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-samples", type=int, default=2500)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                        help="run only these")
    return parser.parse_args(argv)


def run_variant(args: argparse.Namespace, name: str, flags: list[str]) -> dict:
    """Train one variant and return its validation and test figures. A variant whose folder holds
    its finished release is not trained again, and one stopped midway resumes from its checkpoint,
    so `make ablate` may span sessions (delete --output to start over)."""
    folder = args.output / name.replace(", ", "_").replace(" ", "-")
    extra = [flag.format(soft_targets=args.soft_targets) for flag in flags]
    finished = folder / "release" / METADATA_FILE
    if finished.is_file():
        metrics = load_metadata(finished)["metrics"]
    else:
        # No weight average (--ema-decay 0): over a few hundred steps it barely leaves the warm
        # start, so every variant would report the warm start's figures.
        argv = ["--data", *args.data, "--output", str(folder), "--image-size", args.image_size,
                "--precision", "auto", "--epochs", str(args.epochs), "--epoch-samples", str(args.epoch_samples),
                "--init", str(args.init), "--seed", "0", "--kd-alpha", "0", "--finish-epochs", "0",
                "--ema-decay", "0", "--no-tta-decision", "--never-ship", "--resume", *extra]
        metrics = train.main(argv)["metrics"]
    return {"flags": extra, "val_balanced_accuracy": metrics["val_balanced_accuracy"],
            "test_balanced_accuracy": metrics["balanced_accuracy"],
            "test_by_source": {source: {"balanced_accuracy": figures["balanced_accuracy"],
                                        "mel_sensitivity": figures["sensitivity"]["MEL"]}
                               for source, figures in metrics["by_source"].items()},
            "test_mel_sensitivity": metrics["per_class"]["MEL"]["sensitivity"]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    has_targets = args.soft_targets is not None and args.soft_targets.is_file()
    left_out = [name for name in args.variants if "{soft_targets}" in VARIANTS[name] and not has_targets]
    if left_out:
        print(f"no soft targets at {args.soft_targets}: left out {left_out}", flush=True)
    results = {name: run_variant(args, name, VARIANTS[name]) for name in args.variants if name not in left_out}
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
