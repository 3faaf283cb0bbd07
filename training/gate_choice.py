"""How the gate's distance check was chosen: candidate checks side by side, on validation lesions and
the tuning part of the non-lesion set only (the test split and the held-out part are not read).

    python -m training.gate_choice --weights model_store/skin_resnet34.pt

Each candidate is a bank of 3,000 training lesions, a distance, and quality thresholds; its distance
threshold keeps 98% of the validation lesions of every source and class (training.gate's rule). For
each: the share of tuning non-lesions the whole gate refuses; the validation lesions kept in two
folds (the threshold set on one random half, the keep rate read on the other), per source and for
the worst class; and, standing in for equipment the bank never saw, the validation lesions of each
source kept when that source is left out of the bank and of the threshold. Writes
docs/gate_choice.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.covariance import LedoitWolf

import settings
from handler.checkpoint import load_release
from handler.gate import GateNetwork, luminance, sharpness
from handler.preprocessing import eval_transform
from imaging.framing import input_shape
from training.gate import GATE_INPUT_SIZE, K, balanced_sample, decoded, gate_network, group_quantile
from training.ood_images import TUNING, ood_images
from training.presets import BatchAugment
from training.splits import release_split

DEFAULT_REPORT = Path("docs/gate_choice.json")
BANK_SIZE = 3000
KEEP = 0.98
QUALITY_QUANTILE = 0.002
# Lite0's description is [stage five (112) | head (1280)], each of unit length.
HEAD = slice(112, None)


@dataclass
class Described:
    """A set of photos as the candidates see them."""

    light: np.ndarray
    focus: np.ndarray
    features: dict[tuple[int, int], torch.Tensor]  # by the gate network's input size
    sources: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Candidate:
    name: str
    bank: str  # "source_class" or "class": how the bank's 3,000 lesions are balanced
    distance: str  # "knn" or "gaussian"
    input_size: tuple[int, int]
    head_only: bool = False
    augmented: bool = False  # one BatchAugment view of each bank lesion joins the bank
    quality_by_source: bool = True


# The methods were compared at one input, then the input's size at the chosen method.
METHODS_AT = (72, 96)
STAGE5_AND_HEAD = "kNN on stage 5 + head"
CANDIDATES = (
    Candidate("one Gaussian (Ledoit-Wolf) on the head, class-balanced bank (the first probe's)", "class",
              "gaussian", METHODS_AT, head_only=True, quality_by_source=False),
    Candidate("kNN on the head", "source_class", "knn", METHODS_AT, head_only=True),
    Candidate(STAGE5_AND_HEAD, "source_class", "knn", METHODS_AT),
    Candidate(f"{STAGE5_AND_HEAD}, bank with augmented views", "source_class", "knn", METHODS_AT,
              augmented=True),
    Candidate(f"{STAGE5_AND_HEAD}, class-balanced bank and quality", "class", "knn", METHODS_AT,
              quality_by_source=False),
    *(Candidate(STAGE5_AND_HEAD, "source_class", "knn", size) for size in ((64, 84), (56, 76), (48, 64))),
)
SHIPPED = Candidate(STAGE5_AND_HEAD, "source_class", "knn", GATE_INPUT_SIZE)


def describe(images: Iterable[Image.Image], metadata: dict, networks: dict[tuple[int, int], GateNetwork],
             sources: list | None = None, labels: list | None = None,
             ) -> tuple[Described, dict[tuple[int, int], torch.Tensor]]:
    """Quality measures and each network's features of decoded RGB images (non-lesions when
    ``sources`` is None), and the frames each network saw."""
    light, focus, gate_frames = [], [], {size: [] for size in networks}
    for image in images:
        frame = eval_transform(image, input_shape(metadata["input_size"]))
        light.append(luminance(frame))
        focus.append(sharpness(frame))
        for size, network in networks.items():
            gate_frames[size].append(network.frame(image))
    stacked = {size: torch.stack(batch) for size, batch in gate_frames.items()}
    features = {size: run(networks[size], stacked[size]) for size in networks}
    count = len(light)
    return Described(np.array(light), np.array(focus), features,
                     np.array(sources if sources is not None else ["non-lesion"] * count),
                     np.array(labels if labels is not None else [-1] * count)), stacked


def run(network: GateNetwork, frames: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([network(frames[start:start + batch_size])
                      for start in range(0, len(frames), batch_size)])


def knn(bank: torch.Tensor) -> Callable[[torch.Tensor], np.ndarray]:
    def distances(query: torch.Tensor) -> np.ndarray:
        return torch.cat([torch.cdist(query[start:start + 2048], bank).topk(K, largest=False).values[:, -1]
                          for start in range(0, len(query), 2048)]).numpy()
    return distances


def gaussian(bank: torch.Tensor) -> Callable[[torch.Tensor], np.ndarray]:
    fitted = LedoitWolf().fit(bank.double().numpy())

    def distances(query: torch.Tensor) -> np.ndarray:
        centred = query.double().numpy() - fitted.location_
        return ((centred @ fitted.precision_) * centred).sum(1)
    return distances


def score(candidate: Candidate, bank: Described, bank_mask: np.ndarray, extra: torch.Tensor | None,
          val: Described, others: Described) -> dict:
    """The candidate's figures (see the module's docstring)."""
    def features(described: Described) -> torch.Tensor:
        chosen = described.features[candidate.input_size]
        return chosen[:, HEAD] if candidate.head_only else chosen

    def fitted(mask: np.ndarray) -> tuple[Callable, dict]:
        rows = features(bank)[mask]
        if extra is not None:
            rows = torch.cat([rows, extra[mask]])
        groups = [bank.sources[mask] if candidate.quality_by_source else np.zeros(mask.sum())]
        limits = {"min_light": -group_quantile(-bank.light[mask], groups, 1 - QUALITY_QUANTILE),
                  "max_light": group_quantile(bank.light[mask], groups, 1 - QUALITY_QUANTILE),
                  "min_focus": -group_quantile(-bank.focus[mask], groups, 1 - QUALITY_QUANTILE)}
        return (knn if candidate.distance == "knn" else gaussian)(rows), limits

    def passes(described: Described, limits: dict) -> np.ndarray:
        return ((described.light >= limits["min_light"]) & (described.light <= limits["max_light"])
                & (described.focus >= limits["min_focus"]))

    distances, limits = fitted(bank_mask)
    val_distances = distances(features(val))
    val_ok = passes(val, limits)
    threshold = group_quantile(val_distances, [val.sources, val.labels], KEEP)
    refused = ~((distances(features(others)) <= threshold) & passes(others, limits))
    half = np.random.default_rng(1).random(len(val_distances)) < 0.5
    kept = np.zeros(len(val_distances), bool)
    for fold in (half, ~half):
        fold_threshold = group_quantile(val_distances[fold], [val.sources[fold], val.labels[fold]], KEEP)
        kept[~fold] = (val_distances[~fold] <= fold_threshold) & val_ok[~fold]
    sources = list(dict.fromkeys(val.sources.tolist()))
    left_out = {}
    for source in sources:
        without, limits_without = fitted(bank_mask & (bank.sources != source))
        rest = val.sources != source
        d = without(features(val))
        cut = group_quantile(d[rest], [val.sources[rest], val.labels[rest]], KEEP)
        left_out[source] = round(float(((d <= cut) & passes(val, limits_without))[~rest].mean()), 4)
    return {"candidate": candidate.name, "input": "x".join(map(str, candidate.input_size)),
            "shipped": candidate == SHIPPED, "non_lesions_refused": round(float(refused.mean()), 4),
            "val_kept_two_folds": {source: round(float(kept[val.sources == source].mean()), 4)
                                   for source in sources},
            "val_kept_worst_class": round(min(float(kept[val.labels == label].mean())
                                              for label in set(val.labels.tolist())), 4),
            "val_kept_source_left_out": left_out}


def table(rows: list[dict]) -> str:
    sources = list(rows[0]["val_kept_two_folds"])
    header = ("| candidate | input | tuning non-lesions refused | validation kept, two folds: "
              + " / ".join(sources) + " | worst class | kept with the source left out: "
              + " / ".join(sources) + " |\n|---|---|---:|---:|---:|---:|")
    lines = [f"| {row['candidate']}{' (shipped)' if row['shipped'] else ''} | {row['input']} | "
             f"{row['non_lesions_refused']:.3f} | "
             + " / ".join(f"{v:.3f}" for v in row["val_kept_two_folds"].values())
             + f" | {row['val_kept_worst_class']:.3f} | "
             + " / ".join(f"{v:.3f}" for v in row["val_kept_source_left_out"].values()) + " |"
             for row in rows]
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    _, metadata = load_release(args.weights)
    samples, split = release_split(args.data, metadata["split"])
    sources, labels = [s.source for s in samples], [s.label for s in samples]
    networks = {size: gate_network(size)[0] for size in dict.fromkeys(c.input_size for c in CANDIDATES)}
    # The same draw as make gate's bank, and the class-balanced one beside it.
    banks = {"source_class": balanced_sample(split.train, [sources, labels], BANK_SIZE,
                                             np.random.default_rng(args.seed)),
             "class": balanced_sample(split.train, [labels], BANK_SIZE, np.random.default_rng(args.seed))}
    union = sorted(set(banks["source_class"]) | set(banks["class"]))
    bank, bank_frames = describe(
        decoded([samples[i].path for i in union], metadata, networks[METHODS_AT]), metadata, networks,
        [sources[i] for i in union], [labels[i] for i in union])
    augment = BatchAugment(METHODS_AT, seed=args.seed)
    views = run(networks[METHODS_AT], augment(bank_frames[METHODS_AT]))
    val, _ = describe(decoded([samples[i].path for i in split.val], metadata, networks[METHODS_AT]),
                      metadata, networks, [sources[i] for i in split.val], [labels[i] for i in split.val])
    others, _ = describe((other.image for other in ood_images(args.seed, TUNING)), metadata, networks)
    rows = []
    for candidate in CANDIDATES:
        mask = np.isin(np.array(union), banks[candidate.bank])
        rows.append(score(candidate, bank, mask, views if candidate.augmented else None, val, others))
        print(rows[-1], flush=True)
    text = table(rows)
    print(text)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps({"rows": rows, "command": " ".join(
        ["python -m training.gate_choice", *(sys.argv[1:] if argv is None else argv)])}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
