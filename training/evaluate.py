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

from handler.checkpoint import METADATA_FILE, MODEL_KEYS, load_release
from training.datasets import Sample
from training.engine import predict
from training.metrics import balanced_accuracy
from training.precision import Precision
from training.presets import ImageBatches, load_images
from training.referral import referral_report
from training.report import build_report, by_source, write_report
from training.splits import release_split

FP32_CPU = Precision("fp32", torch.device("cpu"))


def release_logits(model: torch.nn.Module, metadata: dict, samples: list[Sample], indices: list[int],
                   precision: Precision = FP32_CPU, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of a release on ``samples[indices]``, framed and colour-corrected as served."""
    images = load_images([samples[i].path for i in indices], metadata["input_size"], desc="decode")
    labels = torch.tensor([samples[i].label for i in indices])
    return predict(model.to(precision.device), ImageBatches(images, labels, batch_size), precision,
                   bool(metadata.get("colour_constancy")), mean=tuple(metadata["mean"]),
                   std=tuple(metadata["std"]))


def shipped_val_bma(weights: Path, samples: list[Sample], indices: list[int]) -> float | None:
    """Validation BMA of the release at ``weights`` on these images (None when there is none), so a
    new run ships only when it beats it on the same images."""
    if not Path(weights).is_file():
        return None
    model, metadata = load_release(weights, required=MODEL_KEYS)
    logits, labels = release_logits(model, metadata, samples, indices)
    return balanced_accuracy(labels.numpy(), logits.argmax(1).numpy())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[Path("../shared/data/ham10000"), Path("../shared/data/isic2019-84px")])
    parser.add_argument("--split", choices=("test", "val", "train", "all"), default="test")
    parser.add_argument("--weights", type=Path, default=Path("model_store/skin_resnet34.pt"))
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
    logits, labels = release_logits(model, metadata, samples, indices,
                                    Precision("fp32", torch.device(args.device)), args.batch_size)
    report = build_report(logits, labels, metadata["temperature"])
    report |= {"split": args.split, "data": [str(d) for d in args.data], "weights": str(args.weights),
               "by_source": by_source(logits, labels, [samples[i].source for i in indices]),
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
        "by_source": {k: v["balanced_accuracy"] for k, v in report["by_source"].items()},
        "referral": report.get("referral")}
    print(json.dumps(summary, indent=2))
    return report


if __name__ == "__main__":
    main()
