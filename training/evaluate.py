"""Evaluate a released SkinResNet34 on data sets, through the preprocessing its release records.

    python -m training.evaluate --data ../shared/data/ham10000 ../shared/data/isic2019-84px \
        --split test --weights model_store/skin_resnet34.pt

The split is rebuilt from the seed stored in the release metadata, within each data folder as
training made it, so ``--split test`` scores the lesions the release was tested on; ``--split all``
scores every image (e.g. another data set).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import settings
from handler.checkpoint import METADATA_FILE, MODEL_KEYS, load_release
from handler.preprocessing import serves_dihedral_tta
from training.datasets import Sample
from training.decisions import operating_point_figures
from training.engine import predict
from training.metrics import balanced_accuracy
from training.mixed_precision import Precision
from training.presets import ImageBatches, decode_frames
from training.referral import referral_report
from training.report import build_report, by_source, write_report
from training.shortcuts import answers_by_change, circle_shift, format_table, mel_shares
from training.splits import release_split

FP32_CPU = Precision("fp32", torch.device("cpu"))


def release_frames(metadata: dict, samples: list[Sample], indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 frames, labels) of ``samples[indices]``, framed as the release's handler frames them."""
    images = decode_frames([samples[i].path for i in indices], metadata["input_size"], desc="decode")
    return images, torch.tensor([samples[i].label for i in indices])


def release_logits(model: torch.nn.Module, metadata: dict, samples: list[Sample], indices: list[int],
                   precision: Precision = FP32_CPU, batch_size: int = 64,
                   frames: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of a release on ``samples[indices]`` (or on ``frames`` already decoded from
    them), framed, colour-corrected and (where the release ships it) averaged over the eight
    dihedral views, as served."""
    images, labels = frames or release_frames(metadata, samples, indices)
    return predict(model.to(precision.device), ImageBatches(images, labels, batch_size), precision,
                   bool(metadata.get("colour_constancy")), serves_dihedral_tta(metadata),
                   mean=tuple(metadata["mean"]), std=tuple(metadata["std"]))


def shipped_val_figures(weights: Path, samples: list[Sample], indices: list[int],
                        mel_floor: float) -> dict | None:
    """Validation BMA and melanoma sensitivity per source of the release at ``weights`` on these
    images, at the operating point a new release is served at (None when there is none), so a new
    run ships only when it beats it on the same images at the same point."""
    if not Path(weights).is_file():
        return None
    model, metadata = load_release(weights, required=MODEL_KEYS)
    logits, labels = release_logits(model, metadata, samples, indices)
    return operating_point_figures(logits, labels, [samples[i].source for i in indices], mel_floor)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+",
                        default=list(settings.DATA_DIRS))
    parser.add_argument("--split", choices=("test", "val", "train", "all"), default="test")
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--metadata", type=Path, default=None,
                        help=f"release metadata (default: {METADATA_FILE} beside the weights)")
    parser.add_argument("--output", type=Path, default=Path("reports"),
                        help="where evaluation_<split>.json and confusion_<split>.png go")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model, metadata = load_release(args.weights, args.metadata, MODEL_KEYS)
    samples, split = release_split(args.data, metadata["split"])
    indices = list(range(len(samples))) if args.split == "all" else getattr(split, args.split)
    precision = Precision("fp32", torch.device(args.device))
    frames = release_frames(metadata, samples, indices)
    logits, labels = release_logits(model, metadata, samples, indices, precision, args.batch_size, frames)
    report = build_report(logits, labels, metadata["temperature"])
    changed = answers_by_change(model, *frames, precision, bool(metadata.get("colour_constancy")),
                                tuple(metadata["mean"]), tuple(metadata["std"]), serves_dihedral_tta(metadata),
                                plain=logits)
    report |= {"split": args.split, "data": [str(d) for d in args.data], "weights": str(args.weights),
               "by_source": by_source(logits, labels, [samples[i].source for i in indices]),
               "mel_calls_by_change": {change: mel_shares(answers, labels) for change, answers in changed.items()},
               "balanced_accuracy_by_change": {change: balanced_accuracy(labels.numpy(), answers.argmax(1).numpy())
                                               for change, answers in changed.items()},
               "release": {key: metadata.get(key) for key in ("name", "version", "input_size", "commit")}}
    if metadata.get("referral"):
        probabilities = torch.softmax(logits / metadata["temperature"], dim=1).numpy()
        report["referral"] = referral_report(labels.numpy(), probabilities, metadata["referral"]["threshold"])
    write_report(report, args.output / f"evaluation_{args.split}.json",
                 args.output / f"confusion_{args.split}.png",
                 f"{metadata['name']} {metadata['version']}, {args.split} "
                 f"(BMA {report['balanced_accuracy']:.3f})")
    summary = {key: report[key] for key in ("images", "balanced_accuracy", "ece_before_calibration",
                                            "ece_after_calibration")} | {
        "macro_auc": report["auc"]["macro"],
        "mel_sensitivity": report["per_class"]["MEL"]["sensitivity"],
        "by_source": {source: {"balanced_accuracy": figures["balanced_accuracy"],
                               "mel_sensitivity": figures["sensitivity"]["MEL"]}
                      for source, figures in report["by_source"].items()},
        "referral": report.get("referral")}
    print(json.dumps(summary, indent=2))
    print(f"\nThe share called melanoma, and the BMA, for the same {args.split} images with one thing "
          f"changed (largest change in MEL calls once a circle is added: "
          f"{circle_shift(report['mel_calls_by_change']):.3f}):")
    print(format_table(report["mel_calls_by_change"], report["balanced_accuracy_by_change"]))
    return report


if __name__ == "__main__":
    main()
