"""Evaluate a released SkinResNet34 on a data set, through the served preprocessing.

    python -m training.evaluate --data ../shared/data/ham10000 --split test \
        --weights model_store/skin_resnet34.pt

The split is rebuilt from the seed stored in the release metadata, so ``--split test`` scores the
same lesions the release was tested on; ``--split all`` scores every image (e.g. another data set).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from handler.checkpoint import METADATA_FILE, load_release
from training.datasets import read_samples
from training.engine import predict
from training.presets import CachedImages, load_images
from training.report import build_report, write_report
from training.splits import split_samples


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
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
    device = torch.device(args.device)
    model, metadata = load_release(args.weights, args.metadata)
    samples = read_samples(args.data)
    if args.split == "all":
        indices = list(range(len(samples)))
    else:
        indices = getattr(split_samples(samples, seed=metadata["split"]["seed"]), args.split)
    size = metadata["input_size"]
    images = load_images([samples[i].path for i in indices], size, desc=f"decode {args.split}")
    labels = torch.tensor([samples[i].label for i in indices])
    loader = torch.utils.data.DataLoader(CachedImages(images, labels), batch_size=args.batch_size)
    logits, labels = predict(model.to(device), loader, device)
    report = build_report(logits, labels, metadata["temperature"])
    report |= {"split": args.split, "data": str(args.data), "weights": str(args.weights),
               "release": {key: metadata.get(key) for key in ("name", "version", "input_size", "commit")}}
    write_report(report, args.output / f"evaluation_{args.split}.json",
                 args.output / f"confusion_{args.split}.png",
                 f"{metadata['name']} {metadata['version']}, {args.split} "
                 f"(BMA {report['balanced_accuracy']:.3f})")
    summary = {key: report[key] for key in ("images", "balanced_accuracy", "ece_before_calibration",
                                            "ece_after_calibration")} | {"macro_auc": report["auc"]["macro"]}
    print(json.dumps(summary, indent=2))
    return report


if __name__ == "__main__":
    main()
