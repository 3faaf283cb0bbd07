"""Releases side by side on the same images: the model card's table of 1.0, 2.0 and 3.0.

    python -m training.compare --release 1.0=40b1b1f 2.0=738423a 3.0=model_store/skin_resnet34.pt

A release is a git commit (its ``model_store/``) or a weights file with its metadata beside it.
Every release is scored on the same lesion-grouped split (deduplicated; the split 1.0 and 2.0 were
trained on, so none of them has seen these images), each through its own framing, colour constancy
and test-time augmentation (``training.evaluate.release_logits``): balanced accuracy and melanoma
sensitivity, overall and per source, the referral score's AUROC, and how much the share of
melanomas, nevi and keratoses called melanoma moves once a dermatoscope's circle is added. On the
validation split it also tables the figures the ship rule compares: each release with logit biases
refitted there for melanoma sensitivity at the floor (never on the test split, which they would tune).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import torch

import settings
from contract.classes import CODES
from handler.checkpoint import METADATA_FILE, MODEL_KEYS, WEIGHTS_FILE, load_release
from handler.preprocessing import serves_dihedral_tta
from training.decisions import MEL_FLOOR, operating_point_figures
from training.evaluate import FP32_CPU, release_frames, release_logits
from training.metrics import balanced_accuracy
from training.referral import TARGET_SENSITIVITY, referral_report
from training.report import by_source, share
from training.shortcuts import circle_shift, circle_table
from training.splits import load_split

MEL = CODES.index("MEL")


def release_files(source: str, scratch: Path) -> Path:
    """The weights file of a release named by a path, or by a git commit (copied into ``scratch``)."""
    path = Path(source)
    if path.is_file():
        return path
    for name in (WEIGHTS_FILE, METADATA_FILE):
        blob = subprocess.run(["git", "show", f"{source}:{settings.MODEL_STORE.name}/{name}"],
                              cwd=settings.REPO, capture_output=True, check=True).stdout
        (scratch / name).write_bytes(blob)
    return scratch / WEIGHTS_FILE


def release_figures(weights: Path, samples: list, indices: list[int], operating_point: bool = False) -> dict:
    """One release's figures on ``samples[indices]``; with ``operating_point`` (validation images
    only: it fits logit biases on them) also the figures the ship rule compares."""
    model, metadata = load_release(weights, required=MODEL_KEYS)
    frames = release_frames(metadata, samples, indices)
    logits, labels = release_logits(model, metadata, samples, indices, frames=frames)
    probabilities = torch.softmax(logits / float(metadata["temperature"]), dim=1).numpy()
    predicted = logits.argmax(1).numpy()
    image_sources = [samples[i].source for i in indices]
    sources = by_source(logits, labels, image_sources)
    calls = circle_table(model, *frames, logits, FP32_CPU, bool(metadata.get("colour_constancy")),
                         tuple(metadata["mean"]), tuple(metadata["std"]), serves_dihedral_tta(metadata))
    return {"version": metadata["version"], "images": len(indices),
            "balanced_accuracy": balanced_accuracy(labels.numpy(), predicted),
            "mel_sensitivity": float((predicted[labels.numpy() == MEL] == MEL).mean()),
            "by_source": {source: {"balanced_accuracy": figures["balanced_accuracy"],
                                   "mel_sensitivity": figures["sensitivity"]["MEL"]}
                          for source, figures in sources.items()},
            "referral_auroc": referral_report(labels.numpy(), probabilities, 0.5)["auroc"],
            "mel_calls": calls,
            "circle_shift": circle_shift(calls)} | (
        {"operating_point": operating_point_figures(logits, labels, image_sources, MEL_FLOOR)}
        if operating_point else {})


def format_comparison(figures: dict[str, dict]) -> str:
    sources = sorted({source for release in figures.values() for source in release["by_source"]})

    header = (["release", "BMA", "**MEL sensitivity**"]
              + [f"{source} {what}" for source in sources for what in ("BMA", "MEL")]
              + ["referral AUROC", "MEL calls moved by a circle"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for name, release in figures.items():
        row = [name, share(release["balanced_accuracy"]), f"**{share(release['mel_sensitivity'])}**"]
        row += [share(release["by_source"].get(source, {}).get(what))
                for source in sources for what in ("balanced_accuracy", "mel_sensitivity")]
        row += [share(release["referral_auroc"]), share(release["circle_shift"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_operating_points(figures: dict[str, dict]) -> str:
    """The ship rule's view: each release with logit biases refitted for validation melanoma
    sensitivity at the floor, so that none gains BMA by finding fewer melanomas."""
    sources = sorted({source for release in figures.values()
                      for source in release["operating_point"]["mel_sensitivity_by_source"]})
    lines = [f"| release | BMA at MEL sensitivity >= {MEL_FLOOR} | " + " | ".join(f"{s} MEL" for s in sources)
             + f" | referral specificity at sensitivity {TARGET_SENSITIVITY} |",
             "|---|---:|" + "---:|" * (len(sources) + 1)]
    for name, release in figures.items():
        point = release["operating_point"]
        lines.append(f"| {name} | {share(point['balanced_accuracy'])} | "
                     + " | ".join(share(point["mel_sensitivity_by_source"].get(s)) for s in sources)
                     + f" | {share(point['referral_specificity'])} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", nargs="+", required=True, metavar="NAME=COMMIT_OR_WEIGHTS")
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None,
                        help="default: docs/release_comparison.json, _val.json for the validation split")
    parser.add_argument("--rescore", nargs="+", metavar="NAME", default=None,
                        help="score only these releases and keep the others' figures from --output, which "
                             "scored the same images (e.g. the shipped release after make recalibrate)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    samples, split, _ = load_split(args.data, args.seed, deduplicated=True)
    indices = getattr(split, args.split)
    output = args.output or Path("docs") / f"release_comparison{'_val' if args.split == 'val' else ''}.json"
    scored = json.loads(output.read_text(encoding="utf-8"))["releases"] if args.rescore else {}
    figures = {}
    with tempfile.TemporaryDirectory(prefix="skin-compare-") as scratch:
        for number, named in enumerate(args.release):
            name, _, source = named.partition("=")
            if args.rescore and name not in args.rescore:
                figures[name] = scored[name]
                continue
            folder = Path(scratch) / str(number)
            folder.mkdir()
            figures[name] = release_figures(release_files(source, folder), samples, indices,
                                            operating_point=args.split == "val")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"split": args.split, "releases": figures}, indent=2) + "\n")
    print(f"{len(indices)} {args.split} images, lesion-grouped, the same for every release:\n")
    print(format_comparison(figures))
    if args.split == "val":
        print("\nAt the operating point the ship rule compares (logit biases refitted on these images):\n")
        print(format_operating_points(figures))
    return figures


if __name__ == "__main__":
    main()
