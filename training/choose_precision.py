"""Calibrate int8 for a release and choose the precision it is served at here (``make precision``).

    python -m training.choose_precision --weights model_store/skin_resnet34.pt \
        --data ../shared/data/ham10000 ../shared/data/isic2019-84px

Calibrates both int8 variants (8-bit and 7-bit activations) on training images of the release's own
lesion-grouped split, writes the check set (validation images, evenly spread, with fp32's answers)
that every later choice is scored on, and makes the choice for this kind of CPU
(tools/precision_choice.py: fastest precision that agrees with fp32). The test split is not used,
since it only reports. All files beside the weights name the weights' SHA-256, so a new release
cannot ship with an old choice; ``make archive`` packs the one for the CPU it runs on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import settings
from handler.checkpoint import load_release
from handler.cpus import available_cores
from handler.runners import calibrate, runner
from handler.served_precision import save_calibration_for
from imaging.framing import input_shape
from tools.precision_choice import choose_here, model_inputs, predictions, write_check
from training.splits import release_split


def evenly_spread(indices: list[int], limit: int) -> list[int]:
    """At most ``limit`` of ``indices``, evenly spaced; all of them when ``limit`` is 0."""
    if not limit or limit >= len(indices):
        return list(indices)
    return [indices[round(position)] for position in np.linspace(0, len(indices) - 1, limit)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--calibration-images", type=int, default=1000,
                        help="training images the int8 calibration sees")
    # About 2,000 keeps a first `make serve` on a new kind of CPU within a minute and a half.
    parser.add_argument("--check-images", type=int, default=2000,
                        help="validation images every choice is scored on, evenly spread (0: all)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(available_cores())
    model, metadata = load_release(args.weights)
    size = input_shape(metadata["input_size"])
    samples, split = release_split(args.data, metadata["split"])
    rng = np.random.default_rng(0)
    calibration_ids = sorted(rng.choice(split.train, min(args.calibration_images, len(split.train)),
                                        replace=False).tolist())
    started = time.perf_counter()
    calibrations = calibrate(model, model_inputs([samples[i].path for i in calibration_ids], metadata)
                             .split(64), size)
    save_calibration_for(calibrations, args.weights, len(calibration_ids))
    print(f"calibrated int8 on {len(calibration_ids)} training images ({time.perf_counter() - started:.0f} s)")
    check_ids = evenly_spread(split.val, args.check_images)
    paths = [samples[i].path for i in check_ids]
    fp32 = predictions(runner(model, "fp32", size), model_inputs(paths, metadata))
    print(f"wrote {write_check(args.weights, paths, [samples[i].label for i in check_ids], fp32.tolist())}")
    return choose_here(args.weights, "make precision")


if __name__ == "__main__":
    main()
