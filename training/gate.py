"""Fit a release's gate (handler/gate.py) and measure it, beside the weights it belongs to.

    python -m training.gate --weights model_store/skin_resnet34.pt     # make gate

From the release's own split (rebuilt from its seed, within each data folder as training made it):
the quality thresholds are quantiles of the training images' size, exposure and focus; the class
means and shared covariance of the penultimate features are fitted on a class-balanced sample of the
training split; the distance threshold keeps ``--keep`` of the validation split with every class
weighted equally, so that the rare classes (DF, VASC, and the malignant ones) are not the ones it
refuses. The test split and the
non-dermoscopy images of training/ood_images.py are scored once, for the figures. Writes
``skin_gate.pt`` beside the weights and docs/gate_report.json, and prints the figures. Samples are
drawn from a seed and the model runs in fp32 on the CPU, so a re-run gives the same gate.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from handler.checkpoint import METADATA_FILE, load_release
from handler.classes import CODES
from handler.gate import (GATE_FILE, GATE_FORMAT, Gate, file_sha256, luminance, penultimate, save_gate,
                          sharpness)
from handler.preprocessing import eval_transform, input_shape, release_input, to_rgb
from handler.refusals import ACCEPTED, REASONS
from training.datasets import Sample
from training.ood_images import ood_images
from training.presets import load_images
from training.splits import release_split

DEFAULT_DATA = [Path("../shared/data/ham10000"), Path("../shared/data/isic2019-84px")]
DEFAULT_REPORT = Path("docs/gate_report.json")


@dataclass
class Measured:
    """What the gate looks at for a set of photos: frames, decoded sizes and the model's outputs."""

    frames: torch.Tensor  # uint8 NCHW at the release's input size
    sizes: list[tuple[int, int]]  # (width, height) of each decoded photo
    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor | None = None


def measure(model: torch.nn.Module, metadata: dict, frames: torch.Tensor, sizes: list[tuple[int, int]],
            labels: torch.Tensor | None = None, batch_size: int = 64) -> Measured:
    """Penultimate features and logits of the release on ``frames``, through the served input path."""
    features, logits = [], []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            batch = release_input(frames[start:start + batch_size], metadata)
            pooled, scores = penultimate(model, batch)
            features.append(pooled)
            logits.append(scores)
    return Measured(frames, sizes, torch.cat(features), torch.cat(logits), labels)


def frames_of(images: list[Image.Image],
              size: int | tuple[int, int]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The served frame of each decoded image, and the image's size."""
    shape = input_shape(size)
    rgb = [to_rgb(image) for image in images]
    return torch.stack([eval_transform(image, shape) for image in rgb]), [image.size for image in rgb]


def fit_gate(train: Measured, val: Measured, weights: Path, metadata: dict, keep: float = 0.97,
             quality_quantile: float = 0.002) -> dict:
    """A gate state: class means and a shrunk shared covariance from ``train``; quality thresholds
    that each refuse at most ``quality_quantile`` of ``train`` at either end; the distance below
    which ``keep`` of ``val`` falls."""
    features = train.features.double().numpy()
    labels = train.labels.numpy()
    classes = sorted(set(labels.tolist()))
    means = np.zeros((len(metadata["classes"]), features.shape[1]))
    for label in classes:
        means[label] = features[labels == label].mean(0)
    # A class absent from the sample gets an unreachable mean, so it never is the nearest one.
    means[[c for c in range(len(means)) if c not in classes]] = 1e6
    # Ledoit-Wolf shrinkage: a few thousand samples in 512 dimensions give a poorly conditioned
    # sample covariance, whose inverse would blow up along rarely seen directions.
    precision = LedoitWolf().fit(features - means[labels]).precision_
    state = {"format": GATE_FORMAT, "means": torch.tensor(means, dtype=torch.float32),
             "precision": torch.tensor(precision, dtype=torch.float32)}
    light = np.array([luminance(frame) for frame in train.frames])
    focus = np.array([sharpness(frame) for frame in train.frames])
    short_sides = np.array([min(size) for size in train.sizes])
    state["thresholds"] = {
        # Below half the network's shorter input side a photo is blown up more than 2x.
        "min_side": int(min(min(input_shape(metadata["input_size"])) // 2, short_sides.min())),
        "min_luminance": float(np.quantile(light, quality_quantile)),
        "max_luminance": float(np.quantile(light, 1 - quality_quantile)),
        "min_sharpness": float(np.quantile(focus, quality_quantile)),
        "max_distance": 0.0,
    }
    gate = Gate.from_state(state)
    distances = np.array([gate.distance(feature) for feature in val.features])
    state["thresholds"]["max_distance"] = balanced_quantile(distances, val.labels.numpy(), keep)
    state["release"] = {"name": metadata["name"], "version": metadata["version"],
                        "input_size": metadata["input_size"], "weights_sha256": file_sha256(weights)}
    state["fitted"] = {"train_images": len(train.frames), "val_images": len(val.frames), "keep": keep,
                       "quality_quantile": quality_quantile}
    return state


def balanced_quantile(values: np.ndarray, labels: np.ndarray, share: float) -> float:
    """The smallest value at or below which ``share`` of ``values`` lies when each class counts as
    much as any other (a plain quantile lets the common NV class decide for all)."""
    order = np.argsort(values)
    counts = np.bincount(labels)
    weights = 1.0 / (counts[labels[order]] * np.count_nonzero(counts))
    position = np.searchsorted(np.cumsum(weights), share - 1e-12)
    return float(values[order][min(position, len(values) - 1)])


def ood_scores(measured: Measured, gate: Gate, temperature: float) -> dict[str, np.ndarray]:
    """Higher means less like the training lesions, for each candidate score."""
    logits = measured.logits / temperature
    return {
        "mahalanobis": np.array([gate.distance(feature) for feature in measured.features]),
        "energy": (-temperature * torch.logsumexp(logits, dim=1)).numpy(),
        "max_softmax": (-torch.softmax(logits, dim=1).max(1).values).numpy(),
    }


def verdicts(measured: Measured, gate: Gate) -> list[str]:
    return [gate.check(frame, size, feature).reason
            for frame, size, feature in zip(measured.frames, measured.sizes, measured.features)]


def rate(flags: list[bool] | np.ndarray) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def rate_by(flags: list[bool] | np.ndarray, groups: list[str]) -> dict[str, float | None]:
    """``rate`` within each group, groups in order of first appearance."""
    return {group: rate([flag for flag, g in zip(flags, groups) if g == group])
            for group in dict.fromkeys(groups)}


def gate_report(gate: Gate, test: Measured, sources: list[str], ood: Measured, kinds: list[str],
                temperature: float) -> dict:
    """Keep rates on the test split, per source and per class; refusal rates and AUROC on the non-dermoscopy images, for the
    whole gate and for the distance alone (the out-of-distribution detector)."""
    test_reasons, ood_reasons = verdicts(test, gate), verdicts(ood, gate)
    test_scores, other_scores = ood_scores(test, gate, temperature), ood_scores(ood, gate, temperature)
    truth = np.r_[np.zeros(len(test_reasons)), np.ones(len(ood_reasons))]
    kept = [reason == ACCEPTED for reason in test_reasons]
    refused = [reason != ACCEPTED for reason in ood_reasons]
    far = other_scores["mahalanobis"] > gate.max_distance
    return {
        "test": {"images": len(kept), "kept_by_gate": rate(kept),
                 "kept_by_ood_detector": rate(test_scores["mahalanobis"] <= gate.max_distance),
                 "kept_by_source": rate_by(kept, sources),
                 "kept_by_class": dict(sorted(rate_by(kept, [CODES[int(label)] for label in test.labels]).items(),
                                              key=lambda item: CODES.index(item[0]))),
                 "reasons": {reason: test_reasons.count(reason) for reason in REASONS}},
        "ood": {"images": len(refused),
                "auroc": {name: float(roc_auc_score(truth, np.r_[test_scores[name], other_scores[name]]))
                          for name in test_scores},
                "refused_by_gate": rate(refused), "refused_by_ood_detector": rate(far),
                "images_by_kind": {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)},
                "refused_by_gate_by_kind": rate_by(refused, kinds),
                "refused_by_ood_detector_by_kind": rate_by(far.tolist(), kinds),
                "reasons": {reason: ood_reasons.count(reason) for reason in REASONS}},
    }


def balanced_sample(indices: list[int], labels: list[int], count: int,
                    rng: np.random.Generator) -> list[int]:
    """About ``count`` of ``indices``, as equal a share from each class as the classes allow: the
    class means of rare classes need more than their few percent of a plain sample."""
    by_class: dict[int, list[int]] = {}
    for index in indices:
        by_class.setdefault(labels[index], []).append(index)
    chosen: list[int] = []
    left, remaining = count, sorted(by_class.values(), key=len)
    while remaining:
        group = remaining.pop(0)
        share = left // (len(remaining) + 1)
        chosen += sample(group, share, rng)
        left -= min(share, len(group))
    return sorted(chosen)


def sample(indices: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """``count`` of ``indices`` drawn without replacement (all of them when there are fewer)."""
    if count >= len(indices):
        return indices
    return sorted(rng.choice(indices, size=count, replace=False).tolist())


def measure_samples(model: torch.nn.Module, metadata: dict, samples: list[Sample], indices: list[int],
                    name: str, batch_size: int) -> Measured:
    paths = [samples[i].path for i in indices]
    frames = load_images(paths, metadata["input_size"], desc=name)
    sizes = [Image.open(path).size for path in paths]
    labels = torch.tensor([samples[i].label for i in indices])
    return measure(model, metadata, frames, sizes, labels, batch_size)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("model_store/skin_resnet34.pt"))
    parser.add_argument("--metadata", type=Path, default=None,
                        help=f"release metadata (default: {METADATA_FILE} beside the weights)")
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--train-images", type=int, default=3000,
                        help="training images sampled for the fit, as equally as possible from each class")
    parser.add_argument("--val-images", type=int, default=2000, help="validation images for the threshold")
    parser.add_argument("--test-images", type=int, default=2000, help="test images for the figures")
    parser.add_argument("--keep", type=float, default=0.97, help="share of validation images to accept")
    parser.add_argument("--quality-quantile", type=float, default=0.002,
                        help="share of training images each quality check may refuse at each end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, metadata = load_release(args.weights, args.metadata)
    samples, split = release_split(args.data, metadata["split"])
    rng = np.random.default_rng(args.seed)
    labels = [sample_.label for sample_ in samples]
    chosen = {"train": balanced_sample(split.train, labels, args.train_images, rng),
              "val": sample(split.val, args.val_images, rng),
              "test": sample(split.test, args.test_images, rng)}
    measured = {name: measure_samples(model, metadata, samples, indices, name, args.batch_size)
                for name, indices in chosen.items()}
    state = fit_gate(measured["train"], measured["val"], args.weights, metadata, args.keep,
                     args.quality_quantile)
    state["fitted"] |= {"data": [str(d) for d in args.data], "seed": args.seed}
    gate_path = save_gate(state, args.weights.with_name(GATE_FILE))

    gate = Gate.from_state(state)
    others = ood_images(args.seed)
    frames, sizes = frames_of([o.image for o in others], metadata["input_size"])
    ood = measure(model, metadata, frames, sizes, batch_size=args.batch_size)
    report = gate_report(gate, measured["test"], [samples[i].source for i in chosen["test"]], ood,
                         [o.kind for o in others], float(metadata["temperature"]))
    report = {"release": state["release"], "thresholds": state["thresholds"],
              "fitted": state["fitted"] | {"test_images": len(chosen["test"])}} | report
    report["command"] = " ".join(["python -m training.gate", *(sys.argv[1:] if argv is None else argv)])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(f"wrote {gate_path} and {args.report} in {time.perf_counter() - started:.0f} s")
    return report


if __name__ == "__main__":
    main()
