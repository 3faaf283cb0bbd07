"""Choose the precision the release is served at, on the machine at hand (``make precision``).

    python -m training.serving_precision --weights model_store/skin_resnet34.pt \
        --data ../shared/data/ham10000 ../shared/data/isic2019-84px

Calibrates int8 on training images (the release's own lesion-grouped split), scores fp32, bf16 and
int8 on validation images, and times each at a served batch; the test split is not used, since it
only reports. The accuracy gate: against fp32, top-1
agreement >= 98% and balanced accuracy within 0.005. Quantisation noise lengthens
the gate's Mahalanobis distances, so each precision gets its own distance threshold: the gate's,
scaled by how much longer that precision's distances are at the gate's class-balanced keep quantile
of the same validation lesions;
how often the gate's out-of-distribution verdict then differs from fp32's, and what share of the
non-dermoscopy images it refuses, are recorded beside it. The fastest precision that passes is
written, with every figure, to ``skin_precision.json`` beside the weights, and the int8 calibration to
``skin_int8_calibration.pt``; ``make archive`` packs the choice. Both are keyed by the weights'
SHA-256, so a new release cannot ship with an old choice.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handler.checkpoint import load_release
from handler.cpus import cpu_info
from handler.gate import GATE_FILE, Gate, load_gate_state
from handler.precision import PRECISIONS, Runner, calibrate, runner
from handler.preprocessing import input_shape, release_input
from handler.precision_choice import choice_path, save_calibration_for
from training.gate import balanced_quantile, frames_of
from training.metrics import balanced_accuracy
from training.ood_images import ood_images
from training.presets import load_images
from training.splits import release_split

MIN_AGREEMENT = 0.98
MAX_BMA_CHANGE = 0.005
SPEED_BATCH = 8


@dataclass(frozen=True)
class Scored:
    logits: torch.Tensor
    features: torch.Tensor


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


def gate_changes(gate: Gate, reference: torch.Tensor, candidate: torch.Tensor,
                 max_distance: float) -> dict:
    """How the gate's out-of-distribution check decides on ``candidate`` features, held against
    ``max_distance``, compared with fp32's ``reference`` features against the gate's own threshold:
    the share where it agrees, and the shares it newly refuses and newly accepts."""
    def kept(features: torch.Tensor, threshold: float) -> torch.Tensor:
        return torch.tensor([gate.distance(row) <= threshold for row in features])
    before, after = kept(reference, gate.max_distance), kept(candidate, max_distance)
    return {"gate_agreement": round(float((before == after).float().mean()), 4),
            "gate_newly_refused": round(float((before & ~after).float().mean()), 4),
            "gate_newly_accepted": round(float((~before & after).float().mean()), 4)}


def gate_threshold(gate: Gate, features: torch.Tensor, labels: torch.Tensor, keep: float) -> float:
    """The distance below which ``keep`` of these validation lesions fall, each class weighing the
    same: the gate's own rule (training.gate), on one precision's features."""
    distances = np.array([gate.distance(row) for row in features])
    return balanced_quantile(distances, labels.numpy(), keep)


def ood_refused(gate: Gate, features: torch.Tensor, max_distance: float) -> float:
    """The share of non-dermoscopy images the distance check refuses at ``max_distance``."""
    return round(float(np.mean([gate.distance(row) > max_distance for row in features])), 4)


def evenly_spread(indices: list[int], limit: int) -> list[int]:
    """At most about ``limit`` of ``indices``, evenly spaced; all of them when ``limit`` is 0."""
    step = max(1, len(indices) // limit) if limit else 1
    return indices[::step]


def score(run: Runner, inputs: torch.Tensor, batch_size: int = 64) -> Scored:
    features, logits = zip(*(run(inputs[start:start + batch_size])
                             for start in range(0, len(inputs), batch_size)))
    return Scored(torch.cat(logits), torch.cat(features))


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
    parser.add_argument("--weights", type=Path, default=Path("model_store/skin_resnet34.pt"))
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[Path("../shared/data/ham10000"), Path("../shared/data/isic2019-84px")])
    parser.add_argument("--calibration-images", type=int, default=1000,
                        help="training images the int8 calibration sees")
    parser.add_argument("--val-limit", type=int, default=0,
                        help="validation images to score and to set each precision's gate "
                             "threshold on, evenly spread (0: all)")
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
        frames = load_images([samples[i].path for i in indices], size)
        return release_input(frames, metadata)

    started = time.perf_counter()
    calibration_inputs = inputs(calibration_ids)
    calibration = calibrate(model, calibration_inputs.split(64), size)
    calibration_s = time.perf_counter() - started
    val_inputs = inputs(val_ids)
    val_labels = torch.tensor([samples[i].label for i in val_ids])
    gate_state = load_gate_state(args.weights.with_name(GATE_FILE), args.weights)
    gate, keep = Gate.from_state(gate_state), float(gate_state["fitted"]["keep"])
    others = ood_images()
    ood_frames, _ = frames_of([other.image for other in others], size)
    ood_inputs = release_input(ood_frames, metadata)
    runners = {name: runner(model, name, size, calibration) for name in PRECISIONS}
    scored = {name: score(run, val_inputs) for name, run in runners.items()}
    # Each precision's threshold is the gate's, scaled by how much longer that precision's distances
    # are at the gate's keep quantile on the same validation images (the sample's own noise cancels).
    val_quantile = {name: gate_threshold(gate, scored[name].features, val_labels, keep) for name in runners}
    candidates = {}
    for name, run in runners.items():
        max_distance = gate.max_distance * val_quantile[name] / val_quantile["fp32"]
        figures = accuracy_gate(scored["fp32"].logits, scored[name].logits, val_labels)
        figures |= gate_changes(gate, scored["fp32"].features, scored[name].features, max_distance)
        figures |= {"gate_max_distance": round(max_distance, 3),
                    "gate_ood_refused": ood_refused(gate, score(run, ood_inputs).features, max_distance)}
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
