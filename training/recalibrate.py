"""A release's temperature and referral threshold chosen again on its validation split by the
rules training uses now (``training.decisions.calibration``), without retraining.

    python -m training.recalibrate            (make recalibrate)

The split is rebuilt from the release's metadata and its logits come through its own framing, as
served (``training.evaluate.release_logits``). The metadata beside the weights gets the new
temperature, referral entry and test ECE, and docs/model_report.json the same where it reports this
release. The weights are untouched, so no answer's ranking changes; run ``make archive`` after it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import settings
from handler.checkpoint import load_release, write_metadata
from training.calibration import probabilities_at
from training.decisions import calibration
from training.evaluate import release_logits
from training.metrics import expected_calibration_error
from training.referral import referral_entry
from training.splits import release_split


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--report", type=Path, default=Path("docs/model_report.json"),
                        help="the model report to update when it reports this release")
    return parser.parse_args(argv)


def calibration_state(logits: dict[str, tuple[torch.Tensor, torch.Tensor]], temperature: float,
                      threshold: float) -> dict:
    """Each split's ECE at ``temperature``, and the referral entry at ``threshold``."""
    probabilities = probabilities_at(logits, temperature)
    return {"temperature": temperature,
            "ece": {name: expected_calibration_error(*pair) for name, pair in probabilities.items()},
            "referral": referral_entry(threshold, probabilities)}


def describe(state: dict) -> str:
    referral = state["referral"]
    return (f"temperature {state['temperature']:.2f}, referral threshold {referral['threshold']:.3f}; "
            + "; ".join(f"{split}: ECE {state['ece'][split]:.4f}, referral sensitivity "
                        f"{referral[split]['sensitivity']:.3f} specificity {referral[split]['specificity']:.3f}"
                        for split in ("validation", "test")))


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    model, metadata = load_release(args.weights)
    samples, split = release_split(args.data, metadata["split"])
    logits = {"validation": release_logits(model, metadata, samples, split.val),
              "test": release_logits(model, metadata, samples, split.test)}
    before = calibration_state(logits, metadata["temperature"], metadata["referral"]["threshold"])
    after = calibration_state(logits, *calibration(*logits["validation"]))
    print(f"before: {describe(before)}\nafter:  {describe(after)}")

    metadata |= {"temperature": after["temperature"], "referral": after["referral"],
                 "recalibrated": {"by": "training.recalibrate", "previous_temperature": before["temperature"]}}
    metadata.setdefault("metrics", {})["ece_after_calibration"] = after["ece"]["test"]
    print(f"wrote {write_metadata(metadata, args.weights.parent)}")
    report = json.loads(args.report.read_text(encoding="utf-8")) if args.report.is_file() else {}
    if report.get("release", {}).get("version") == metadata["version"]:
        report |= {"temperature": after["temperature"], "ece_after_calibration": after["ece"]["test"],
                   "referral": after["referral"]}
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.report}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
