"""A release's decisions taken again on its validation split by the rules training uses now
(``training.train.decide_and_test``): logit biases, temperature and referral threshold, then the
test split scored once; the network itself is not retrained.

    python -m training.recalibrate            (make recalibrate)

The split is rebuilt from the release's metadata and the images are framed as served
(``training.evaluate.release_frames``). The biases recorded in the metadata are taken out of the last
layer before new ones are fitted, so the result is what training would have decided today. The
release's weights (their last layer's bias) and metadata are rewritten, with ``recalibrated`` saying
what it had before, and docs/model_report.json where it reports this release. Answers change, so
give the release a new ``--version``; then run ``make archive`` and ``make release-files``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import settings
from contract.classes import CODES
from handler.checkpoint import load_release, save_release
from training.decisions import MEL_FLOOR, REFERRAL_WEIGHT, choose_logit_bias
from training.engine import predict
from training.evaluate import FP32_CPU, release_frames
from training.presets import ImageBatches
from training.release import REPORTED_METRICS
from training.report import write_model_report
from training.splits import release_split
from training.train import decide_and_test, fold_bias

BATCH_SIZE = 64
# The referral weights whose validation figures are printed beside the one training uses.
SHOWN_REFERRAL_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--version", default=None, help="the release's new version (default: unchanged)")
    parser.add_argument("--report", type=Path, default=Path("docs/model_report.json"),
                        help="the model report to update when it reports this release")
    return parser.parse_args(argv)


def folded_bias(metadata: dict) -> np.ndarray:
    """The logit biases a release records as folded into its last layer (zeros where none are)."""
    values = metadata.get("metrics", {}).get("logit_bias", {}).get("values", {})
    return np.array([float(values.get(code, 0.0)) for code in CODES])


def referral_weight_sweep(model: torch.nn.Module, val: ImageBatches, colour_constancy: bool) -> dict[str, dict]:
    """The validation figures of the biases each of ``SHOWN_REFERRAL_WEIGHTS`` fits, for the card."""
    logits, labels = predict(model, val, FP32_CPU, colour_constancy)
    return {str(weight): choose_logit_bias(logits, labels, MEL_FLOOR, weight)[1]["after"]
            for weight in SHOWN_REFERRAL_WEIGHTS}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model, metadata = load_release(args.weights)
    samples, split = release_split(args.data, metadata["split"])
    before = {"version": metadata["version"], "temperature": metadata["temperature"],
              "referral": metadata["referral"], "metrics": {key: metadata.get("metrics", {}).get(key)
                                                            for key in ("balanced_accuracy", "logit_bias")}}
    # The biases were recorded to 0.01, so the network they come off is the trained one to within that.
    fold_bias(model, -folded_bias(metadata))
    val = ImageBatches(*release_frames(metadata, samples, split.val), BATCH_SIZE)
    test = ImageBatches(*release_frames(metadata, samples, split.test), BATCH_SIZE)
    colour_constancy = bool(metadata.get("colour_constancy"))
    sweep = referral_weight_sweep(model, val, colour_constancy)
    for weight, figures in sweep.items():
        print(f"referral weight {weight}: validation {figures}" + (" (used)" if weight == str(REFERRAL_WEIGHT) else ""))
    decisions = argparse.Namespace(colour_constancy=colour_constancy, mel_floor=MEL_FLOOR, tta_decision=False)
    report = decide_and_test(model, val, test, FP32_CPU, decisions,
                             [samples[i].source for i in split.val], [samples[i].source for i in split.test])
    referral = report.pop("referral")
    metrics = metadata.get("metrics", {})
    report["dihedral_tta_val_balanced_accuracy"] = metrics.get("dihedral_tta_val_balanced_accuracy")
    metadata["metrics"] = metrics | {key: report[key] for key in REPORTED_METRICS if key in report}
    metadata |= {"version": args.version or metadata["version"], "temperature": report["temperature"],
                 "referral": referral, "recalibrated": {"by": "training.recalibrate", "before": before,
                                                        "referral_weight_sweep": sweep}}
    print(f"before: {json.dumps(before)}\nafter: BMA {report['balanced_accuracy']:.4f}, temperature "
          f"{report['temperature']:.2f}, logit biases {report['logit_bias']}, referral {referral}")
    print(f"wrote {save_release(model.state_dict(), metadata, args.weights.parent)}")
    reported = json.loads(args.report.read_text(encoding="utf-8")) if args.report.is_file() else {}
    if reported.get("release", {}).get("version") == before["version"]:
        write_model_report(report, referral, metadata, args.report)
        print(f"wrote {args.report}")
    return {"before": before, "after": metadata}


if __name__ == "__main__":
    main()
