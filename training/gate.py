"""Fit a release's gate (handler/gate.py) and measure it, beside the weights it belongs to.

    python -m training.gate --weights model_store/skin_resnet34.pt     # make gate

From the release's own split (rebuilt from its seed, as training made it): the quality thresholds are
quantiles of the training images' size, exposure and focus; the bank holds the gate network's
features of ``--train-images`` training lesions, as equal a share from each class as the classes
allow; the distance threshold is the smallest that keeps ``--keep`` of the validation lesions of
every source and of every class, so that neither a rare class nor another clinic's camera is what it
refuses. The network, its input, the features and k were chosen on validation lesions and the
tuning part of the non-lesion set (training/gate_choice.py). The test split, both parts of the
non-lesion set (training/ood_images.py) and clinical close-ups simulated from test lesions
(training/clinical.py) are scored once, for the figures. Writes ``skin_gate.pt`` beside the weights
and docs/gate_report.json, and prints the figures. Samples are drawn from a seed and both networks
run in fp32 on the CPU, so a re-run gives the same gate.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

import settings
from contract.classes import CODES
from contract.refusals import ACCEPTED, REASONS
from handler.checkpoint import METADATA_FILE, load_release
from handler.gate import GATE_FILE, GATE_FORMAT, Gate, GateNetwork, file_sha256, luminance, save_gate, sharpness
from handler.lite import WEIGHTS_NAME, installed_weights, load_lite_features
from handler.preprocessing import eval_transform, release_input
from imaging.decode import decode_image
from imaging.framing import input_shape
from training.clinical import SIZE as CLINICAL_SIZE
from training.clinical import clinical_views
from training.datasets import Sample
from training.metrics import balanced_accuracy
from training.ood_images import HELD_OUT, TUNING, ood_images
from training.presets import decode_frames
from training.referral import referral_report
from training.splits import release_split

DEFAULT_REPORT = Path("docs/gate_report.json")
# The gate network's input: the smallest that refuses about as many tuning non-lesions and keeps
# about as many validation lesions as larger ones (training/gate_choice.py compares them), so that
# the gate stays a small share of a served image's CPU time (make bench prints it).
GATE_INPUT_SIZE = (48, 64)
K = 5


@dataclass
class Photos:
    """What the gate looks at for a set of photos."""

    frames: torch.Tensor  # uint8 NCHW at the release's input size: the quality checks read these
    sizes: list[tuple[int, int]]  # (width, height) of each decoded photo, as the handler decodes it
    features: torch.Tensor  # the gate network's

    def quality(self) -> tuple[np.ndarray, np.ndarray]:
        """Luminance and sharpness of each frame."""
        return (np.array([luminance(frame) for frame in self.frames]),
                np.array([sharpness(frame) for frame in self.frames]))


def photos_of(images: Iterable[Image.Image], metadata: dict, network: GateNetwork,
              batch_size: int = 64) -> Photos:
    """Frame each decoded RGB image of an iterable for both networks, as the handler does, and run
    the gate network on them."""
    frames, gate_frames, sizes = [], [], []
    for image in images:
        frames.append(eval_transform(image, input_shape(metadata["input_size"])))
        gate_frames.append(network.frame(image))
        sizes.append(image.size)
    gate_batch = torch.stack(gate_frames)
    features = torch.cat([network(gate_batch[start:start + batch_size])
                          for start in range(0, len(gate_batch), batch_size)])
    return Photos(torch.stack(frames), sizes, features)


def decoded(paths: list[Path], metadata: dict, network: GateNetwork) -> Iterator[Image.Image]:
    """Each file decoded as the handler decodes a request (JPEG draft mode for the larger input)."""
    draft = max(*input_shape(metadata["input_size"]), *network.input_size)
    for path in paths:
        yield decode_image(Path(path).read_bytes(), draft_size=draft)


def gate_network(input_size: tuple[int, int] = GATE_INPUT_SIZE) -> tuple[GateNetwork, dict]:
    """The gate network from the installed ImageNet weights, and its record for the gate state."""
    weights = installed_weights()
    record = {"name": WEIGHTS_NAME, "weights_sha256": file_sha256(weights),
              "input_size": list(input_size), "colour_constancy": True}
    return GateNetwork(load_lite_features(weights), input_size, True), record


def group_quantile(values: np.ndarray, groups: list[np.ndarray], keep: float) -> float:
    """The smallest value at or below which at least ``keep`` of ``values`` lies within every group
    of every grouping (sources, classes): the group that needs the most sets it."""
    threshold = -np.inf
    for grouping in groups:
        for group in set(grouping.tolist()):
            ordered = np.sort(values[grouping == group])
            threshold = max(threshold, ordered[min(len(ordered) - 1, int(np.ceil(keep * len(ordered))) - 1)])
    return float(threshold)


def fit_gate(bank: Photos, bank_sources: np.ndarray, val_features: torch.Tensor,
             val_groups: list[np.ndarray], weights: Path, metadata: dict, network: dict,
             keep: float = 0.98, quality_quantile: float = 0.002) -> dict:
    """A gate state: the bank's features; quality thresholds that each refuse at most
    ``quality_quantile`` of the bank's photos of any source at either end (the collections differ
    in exposure and sharpness, and none is to be refused for its camera); the distance below which
    ``keep`` of the validation lesions of each group falls."""
    light, focus = bank.quality()
    short_sides = np.array([min(size) for size in bank.sizes])
    state = {"format": GATE_FORMAT, "network": network, "bank": bank.features.half(), "k": K,
             "thresholds": {
                 # Below half the network's shorter input side a photo is blown up more than 2x.
                 "min_side": int(min(min(input_shape(metadata["input_size"])) // 2, short_sides.min())),
                 "min_luminance": -group_quantile(-light, [bank_sources], 1 - quality_quantile),
                 "max_luminance": group_quantile(light, [bank_sources], 1 - quality_quantile),
                 "min_sharpness": -group_quantile(-focus, [bank_sources], 1 - quality_quantile),
                 "max_distance": 0.0}}
    distances = Gate.from_state(state).distances(val_features).numpy()
    state["thresholds"]["max_distance"] = group_quantile(distances, val_groups, keep)
    state["release"] = {"name": metadata["name"], "version": metadata["version"],
                        "input_size": metadata["input_size"], "weights_sha256": file_sha256(weights)}
    state["fitted"] = {"bank_images": len(bank.frames), "val_images": len(val_features), "keep": keep,
                       "keep_within": "every source and every class", "quality_quantile": quality_quantile}
    return state


def verdicts(photos: Photos, gate: Gate) -> tuple[list[str], np.ndarray]:
    """Each photo's reason (ACCEPTED or a refusal) and its distance."""
    distances = gate.distances(photos.features)
    reasons = [gate.check(frame, size, float(distance)).reason
               for frame, size, distance in zip(photos.frames, photos.sizes, distances)]
    return reasons, distances.numpy()


def rate(flags: list[bool] | np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 4) if len(flags) else None


def rate_by(flags: list[bool] | np.ndarray, groups: list[str]) -> dict[str, float | None]:
    """``rate`` within each group, groups in order of first appearance."""
    return {group: rate([flag for flag, g in zip(flags, groups) if g == group])
            for group in dict.fromkeys(groups)}


def lesion_report(reasons: list[str], distances: np.ndarray, gate: Gate, sources: list[str],
                  labels: list[int]) -> dict:
    """Keep rates of lesions: by the whole gate, by the distance alone, per source and per class."""
    kept = [reason == ACCEPTED for reason in reasons]
    codes = [CODES[label] for label in labels]
    return {"images": len(kept), "kept_by_gate": rate(kept),
            "kept_by_distance": rate(distances <= gate.max_distance),
            "kept_by_source": rate_by(kept, sources),
            "kept_by_class": {code: rate_by(kept, codes).get(code) for code in CODES},
            "reasons": {reason: reasons.count(reason) for reason in REASONS}}


def non_lesion_report(reasons: list[str], distances: np.ndarray, gate: Gate, kinds: list[str],
                      origins: list[str], lesion_distances: np.ndarray) -> dict:
    """Refusal rates of non-lesion photos: by the whole gate, by the distance alone, per kind and
    per origin; and how well the distance alone tells them from test lesions (AUROC)."""
    refused = [reason != ACCEPTED for reason in reasons]
    truth = np.r_[np.zeros(len(lesion_distances)), np.ones(len(distances))]
    return {"images": len(refused), "refused_by_gate": rate(refused),
            "refused_by_distance": rate(distances > gate.max_distance),
            "distance_auroc": round(float(roc_auc_score(truth, np.r_[lesion_distances, distances])), 4),
            "images_by_kind": {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)},
            "refused_by_kind": rate_by(refused, kinds),
            "refused_by_origin": rate_by(refused, origins),
            "reasons": {reason: reasons.count(reason) for reason in REASONS}}


def probabilities_of(model: torch.nn.Module, metadata: dict, frames: torch.Tensor,
                     batch_size: int = 64) -> np.ndarray:
    """The release's calibrated class probabilities for uint8 frames at its input size (fp32)."""
    with torch.inference_mode():
        logits = torch.cat([model(release_input(frames[start:start + batch_size], metadata))
                            for start in range(0, len(frames), batch_size)])
    return torch.softmax(logits / float(metadata["temperature"]), dim=1).numpy()


def answer_quality(labels: np.ndarray, probabilities: np.ndarray, metadata: dict) -> dict:
    """Balanced accuracy and the referral flag's figures at the release's threshold."""
    if not len(labels):
        return {"images": 0}
    referral = referral_report(labels, probabilities, float(metadata["referral"]["threshold"]))
    return {"images": len(labels), "bma": round(balanced_accuracy(labels, probabilities.argmax(1)), 4),
            "referral_auroc": referral["auroc"] and round(referral["auroc"], 4),
            "referral_sensitivity": referral["sensitivity"] and round(referral["sensitivity"], 4)}


def clinical_report(model: torch.nn.Module, metadata: dict, network: GateNetwork, gate: Gate,
                    paths: list[Path], labels: np.ndarray, seed: int) -> dict:
    """What the gate and the model do with clinical close-ups simulated from test lesions
    (training/clinical.py): the share the gate keeps, its reasons, and the model's answers on all
    of them and on those it keeps, beside its answers on the dermoscopy photos they came from."""
    frames = decode_frames(paths, CLINICAL_SIZE, desc="clinical")
    generator = torch.Generator().manual_seed(seed)
    views = (view for start in range(0, len(frames), 64)
             for view in clinical_views(frames[start:start + 64], generator))
    photos = photos_of(views, metadata, network)
    reasons, _ = verdicts(photos, gate)
    kept = np.array([reason == ACCEPTED for reason in reasons])
    answers = probabilities_of(model, metadata, photos.frames)
    dermoscopy = probabilities_of(model, metadata, decode_frames(paths, metadata["input_size"]))
    return {"images": len(labels), "kept_by_gate": rate(kept),
            "reasons": {reason: reasons.count(reason) for reason in REASONS},
            "answers": {"dermoscopy_originals": answer_quality(labels, dermoscopy, metadata),
                        "clinical_all": answer_quality(labels, answers, metadata),
                        "clinical_kept": answer_quality(labels[kept], answers[kept], metadata)}}


def balanced_sample(indices: list[int], levels: list[list], count: int,
                    rng: np.random.Generator) -> list[int]:
    """About ``count`` of ``indices``, as equal a share from each group of ``levels[0]`` (a key per
    sample) as the groups allow, and within each group as equal a share from each group of the next
    level: the bank needs the rare classes and the smaller collections near it, which a plain sample
    gives a few percent of itself."""
    if not levels:
        return sample(indices, count, rng)
    by_group: dict = {}
    for index in indices:
        by_group.setdefault(levels[0][index], []).append(index)
    chosen: list[int] = []
    left, remaining = count, sorted(by_group.values(), key=len)
    while remaining:
        group = remaining.pop(0)
        picked = balanced_sample(group, levels[1:], left // (len(remaining) + 1), rng)
        chosen += picked
        left -= len(picked)
    return sorted(chosen)


def sample(indices: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """``count`` of ``indices`` drawn without replacement (all of them when there are fewer)."""
    if count >= len(indices):
        return indices
    return sorted(rng.choice(indices, size=count, replace=False).tolist())


def clinical_sample(test: list[int], count: int, seed: int) -> list[int]:
    """The test lesions that clinical close-ups are simulated from, drawn from a generator of their
    own so that every tool that reads them draws the same."""
    return sample(test, count, np.random.default_rng([seed, 1]))


def lesion_photos(samples: list[Sample], indices: list[int], metadata: dict,
                  network: GateNetwork) -> Photos:
    return photos_of(decoded([samples[i].path for i in indices], metadata, network), metadata, network)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS)
    parser.add_argument("--metadata", type=Path, default=None,
                        help=f"release metadata (default: {METADATA_FILE} beside the weights)")
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--train-images", type=int, default=3000,
                        help="training lesions in the bank, as equally as possible from each class")
    parser.add_argument("--keep", type=float, default=0.98,
                        help="share of the validation lesions of every source and class to accept")
    parser.add_argument("--quality-quantile", type=float, default=0.002,
                        help="share of the bank's photos each quality check may refuse at each end")
    parser.add_argument("--clinical-images", type=int, default=1000,
                        help="test lesions to simulate clinical close-ups of")
    parser.add_argument("--seed", type=int, default=0)
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
    network, record = gate_network()
    rng = np.random.default_rng(args.seed)
    labels = [sample_.label for sample_ in samples]
    sources = [sample_.source for sample_ in samples]
    bank_ids = balanced_sample(split.train, [sources, labels], args.train_images, rng)
    bank = lesion_photos(samples, bank_ids, metadata, network)
    val = lesion_photos(samples, split.val, metadata, network)
    val_groups = [np.array([sources[i] for i in split.val]), np.array([labels[i] for i in split.val])]
    state = fit_gate(bank, np.array([sources[i] for i in bank_ids]), val.features, val_groups,
                     args.weights, metadata, record, args.keep, args.quality_quantile)
    state["fitted"] |= {"data": [str(d) for d in args.data], "seed": args.seed}
    gate_path = save_gate(state, args.weights.with_name(GATE_FILE))
    gate = Gate.from_state(state)

    test = lesion_photos(samples, split.test, metadata, network)
    test_reasons, test_distances = verdicts(test, gate)
    report = {"release": state["release"], "network": record, "k": K, "thresholds": state["thresholds"],
              "fitted": state["fitted"],
              "test": lesion_report(test_reasons, test_distances, gate,
                                    [samples[i].source for i in split.test], [labels[i] for i in split.test])}
    for part in (TUNING, HELD_OUT):
        kinds, origins = [], []

        def images(part: str = part, kinds: list = kinds, origins: list = origins):
            for other in ood_images(args.seed, part):
                kinds.append(other.kind)
                origins.append(other.origin)
                yield other.image
        reasons, distances = verdicts(photos_of(images(), metadata, network), gate)
        report[f"non_lesions_{part}"] = non_lesion_report(reasons, distances, gate, kinds, origins,
                                                          test_distances)
    clinical_ids = clinical_sample(split.test, args.clinical_images, args.seed)
    report["clinical_simulated"] = clinical_report(
        model, metadata, network, gate, [samples[i].path for i in clinical_ids],
        np.array([labels[i] for i in clinical_ids]), args.seed)
    report["command"] = " ".join(["python -m training.gate", *(sys.argv[1:] if argv is None else argv)])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(f"wrote {gate_path} and {args.report} in {time.perf_counter() - started:.0f} s")
    return report


if __name__ == "__main__":
    main()
