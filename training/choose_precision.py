"""Choose the precision the release is served at, on the machine at hand (``make precision``).

    python -m training.choose_precision --weights model_store/skin_resnet34.pt \
        --data ../shared/data/ham10000 ../shared/data/isic2019-84px

Calibrates int8 on training images (the release's own lesion-grouped split), scores fp32, bf16 and
int8 on validation images, and times each at a served batch; the test split is not used, since it
only reports. The accuracy gate: against fp32, top-1
agreement >= 98% and balanced accuracy within 0.005. The photo gate (handler/gate.py) runs its own
network in fp32 at every precision, so a precision does not change its verdicts. The fastest precision
that passes is
written, with every figure, to ``skin_precision.json`` beside the weights, and the int8 calibration to
``skin_int8_calibration.pt``; ``make archive`` packs the choice. Both are keyed by the weights'
SHA-256, so a new release cannot ship with an old choice.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import settings
from handler.checkpoint import load_release
from handler.cpus import cpu_info
from handler.preprocessing import release_input
from handler.runners import PRECISIONS, Runner, calibrate, runner
from handler.served_precision import choice_path, save_calibration_for
from imaging.framing import input_shape
from training.metrics import balanced_accuracy
from training.presets import decode_frames
from training.splits import release_split

MIN_AGREEMENT = 0.98
MAX_BMA_CHANGE = 0.005
SPEED_BATCH = 8


def accuracy_gate(reference: torch.Tensor, candidate: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 agreement of ``candidate`` logits with the fp32 ``reference``, both BMAs, and whether
    the candidate passes (agreement >= 98%, BMA within 0.005 of fp32's)."""
    truth = labels.numpy()
    reference_bma = balanced_accuracy(truth, reference.argmax(1).numpy())
    bma = balanced_accuracy(truth, candidate.argmax(1).numpy())
    agreement = float((reference.argmax(1) == candidate.argmax(1)).float().mean())
    return {"top1_agreement": round(agreement, 4), "bma": round(bma, 4),
            "bma_change": round(bma - reference_bma, 4),
            "passed": agreement >= MIN_AGREEMENT and abs(bma - reference_bma) <= MAX_BMA_CHANGE}


def evenly_spread(indices: list[int], limit: int) -> list[int]:
    """At most about ``limit`` of ``indices``, evenly spaced; all of them when ``limit`` is 0."""
    step = max(1, len(indices) // limit) if limit else 1
    return indices[::step]


def logits_of(run: Runner, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([run(inputs[start:start + batch_size])[1]
                      for start in range(0, len(inputs), batch_size)])


def images_per_s(run: Runner, batch: torch.Tensor, seconds: float) -> float:
    """Forward passes of one served batch, back to back for ``seconds`` after a warm-up."""
    run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done == 0:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def choose(candidates: dict[str, dict]) -> str:
    """The fastest candidate that passed the accuracy gate (fp32 always does)."""
    passed = {name: figures["images_per_s"] for name, figures in candidates.items() if figures["passed"]}
    return max(passed, key=passed.get)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--data", type=Path, nargs="+",
                        default=list(settings.DATA_DIRS))
    parser.add_argument("--calibration-images", type=int, default=1000,
                        help="training images the int8 calibration sees")
    parser.add_argument("--val-limit", type=int, default=0,
                        help="score at most this many validation images, evenly spread (0: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for timing; 1 is a served worker's share (2 workers x 1 "
                             "thread on 2 cores)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per precision")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, metadata = load_release(args.weights)
    size = input_shape(metadata["input_size"])
    samples, split = release_split(args.data, metadata["split"])
    rng = np.random.default_rng(0)
    calibration_ids = sorted(rng.choice(split.train, min(args.calibration_images, len(split.train)),
                                        replace=False).tolist())
    val_ids = evenly_spread(split.val, args.val_limit)

    def inputs(indices: list[int]) -> torch.Tensor:
        frames = decode_frames([samples[i].path for i in indices], size)
        return release_input(frames, metadata)

    started = time.perf_counter()
    calibration_inputs = inputs(calibration_ids)
    calibration = calibrate(model, calibration_inputs.split(64), size)
    calibration_s = time.perf_counter() - started
    val_inputs = inputs(val_ids)
    labels = torch.tensor([samples[i].label for i in val_ids])
    runners = {name: runner(model, name, size, calibration) for name in PRECISIONS}
    logits = {name: logits_of(run, val_inputs) for name, run in runners.items()}
    candidates = {}
    for name, run in runners.items():
        figures = accuracy_gate(logits["fp32"], logits[name], labels)
        figures["images_per_s"] = round(images_per_s(run, val_inputs[:SPEED_BATCH], args.seconds), 1)
        candidates[name] = figures
        print(f"{name}: {figures}", flush=True)
    chosen = choose(candidates)
    choice = {
        "weights_sha256": save_calibration_for(calibration, args.weights, len(calibration_ids)),
        "chosen": chosen,
        "rule": f"fastest precision with top-1 agreement >= {MIN_AGREEMENT} with fp32 and balanced "
                f"accuracy within {MAX_BMA_CHANGE} of fp32's on validation images",
        "candidates": candidates,
        "scored_on": {"split": "validation", "images": len(val_ids)},
        "calibration": {"images": len(calibration_ids), "from": "train split", "seconds": round(calibration_s, 1)},
        "speed": {"batch": SPEED_BATCH, "threads": args.threads, "seconds": args.seconds,
                  "measured": "model only (features and logits), on preprocessed validation images"},
        "cpu": cpu_info(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    path = choice_path(args.weights)
    path.write_text(json.dumps(choice, indent=2) + "\n")
    print(f"chose {chosen}; wrote {path} and the int8 calibration beside it")
    return choice


if __name__ == "__main__":
    main()
