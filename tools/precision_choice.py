"""Choose the precision a release is served at on this kind of CPU, in about half a minute.

``make serve`` runs it on its first start on a kind of CPU that has no choice for the release
(``ensure_choice``); ``make precision`` runs it after calibrating int8. Each precision is timed
model-only at a served batch on one thread (a served worker's share); then, fastest first, each one
faster than fp32 is scored on the release's check images (validation images, ``CHECK_FILE``) until
one passes the accuracy gate: top-1 agreement with fp32 >= 98% and balanced accuracy within 0.005
of fp32's. fp32's answers are stored in the check file, so its slow pass is not repeated on every
machine. The choice, with every figure and why, goes to ``skin_precision/<kind>.json`` beside the
weights. Only the serve extra is needed: the images are read from the data folders, never shipped.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import settings
from handler.checkpoint import load_release
from handler.cpus import available_cores, cpu_info, cpu_kind
from handler.gate import file_sha256
from handler.preprocessing import frame_photo, release_input
from handler.runners import PRECISIONS, Runner, runner
from handler.served_precision import calibration_path, check_path, choice_path, load_calibration, release_choice
from imaging.framing import input_shape

MIN_AGREEMENT = 0.98
MAX_BMA_CHANGE = 0.005
SPEED_BATCH = 8
SPEED_SECONDS = 2.0
SCORE_BATCH = 64
RULE = (f"the fastest precision whose top-1 agrees with fp32's on >= {MIN_AGREEMENT:.0%} of the check "
        f"images and whose balanced accuracy is within {MAX_BMA_CHANGE} of fp32's")


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``labels`` (here without scikit-learn,
    which the serve extra does not install)."""
    return float(np.mean([(predicted[labels == label] == label).mean() for label in np.unique(labels)]))


def accuracy_gate(reference: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 agreement of ``predicted`` classes with fp32's ``reference``, the candidate's BMA and
    its change from fp32's, and whether it passes."""
    reference_bma, bma = balanced_accuracy(labels, reference), balanced_accuracy(labels, predicted)
    agreement = float((reference == predicted).mean())
    return {"top1_agreement": round(agreement, 4), "bma": round(bma, 4),
            "bma_change": round(bma - reference_bma, 4),
            "passed": agreement >= MIN_AGREEMENT and abs(bma - reference_bma) <= MAX_BMA_CHANGE}


def write_check(weights: Path, paths: list[Path], labels: list[int], fp32: list[int]) -> Path:
    """The check images of ``weights``: their paths (relative to the repository where they can be),
    labels and fp32 top-1 classes."""
    def named(path: Path) -> str:
        return os.path.relpath(Path(path).resolve(), settings.REPO)
    images = [{"path": named(path), "label": label, "fp32": top} for path, label, top in zip(paths, labels, fp32)]
    path = check_path(weights)
    path.write_text(json.dumps({"weights_sha256": file_sha256(weights), "split": "validation",
                                "images": images}) + "\n")
    return path


def read_check(weights: Path, weights_sha256: str) -> list[dict]:
    """The check images of ``weights`` (whose SHA-256 is given), each present on this machine."""
    path = check_path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: make precision writes it")
    check = json.loads(path.read_text())
    if check["weights_sha256"] != weights_sha256:
        raise ValueError(f"{path} belongs to other weights: rerun make precision")
    missing = [image["path"] for image in check["images"] if not (settings.REPO / image["path"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(check['images'])} validation images are not "
                                f"here (first: {missing[0]}, from the data folders in settings.py)")
    return check["images"]


def model_inputs(paths: list[Path], metadata: dict) -> torch.Tensor:
    """The network's inputs for ``paths``, through the served decode and framing."""
    frames = torch.stack([frame_photo(Path(path).read_bytes(), metadata["input_size"]) for path in paths])
    return release_input(frames, metadata)


def predictions(run: Runner, inputs: torch.Tensor) -> np.ndarray:
    return torch.cat([run(inputs[start:start + SCORE_BATCH])[1].argmax(1)
                      for start in range(0, len(inputs), SCORE_BATCH)]).numpy()


def images_per_s(run: Runner, batch: torch.Tensor, seconds: float = SPEED_SECONDS) -> float:
    """Forward passes of one served batch, back to back for ``seconds`` (at least one), after a
    one-image warm-up (a slow precision's full warm-up batch would cost seconds for nothing)."""
    run(batch[:1])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done == 0:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def choose_here(weights: Path, measured_by: str, say: Callable[[str], None] = print) -> dict:
    """Time every precision, score the fast ones on the check images, write the choice for this
    kind of CPU beside ``weights`` and return it."""
    started = time.perf_counter()
    cpu = cpu_info()
    kind = cpu_kind(cpu["flags"])
    say(f"choosing the serving precision for this kind of CPU ({kind}); about half a minute, once")
    sha = file_sha256(weights)
    images = read_check(weights, sha)
    model, metadata = load_release(weights)
    calibrations = load_calibration(calibration_path(weights), sha)
    size = input_shape(metadata["input_size"])
    torch.set_num_threads(available_cores())
    inputs = model_inputs([settings.REPO / image["path"] for image in images], metadata)
    labels = np.array([image["label"] for image in images])
    reference = np.array([image["fp32"] for image in images])
    say(f"  decoded {len(images)} validation images ({time.perf_counter() - started:.0f} s)")
    runners = {name: runner(model, name, size, calibrations) for name in PRECISIONS}
    torch.set_num_threads(1)
    candidates = {}
    for name, run in runners.items():
        candidates[name] = {"images_per_s": round(images_per_s(run, inputs[:SPEED_BATCH]), 1)}
        say(f"  {name}: {candidates[name]['images_per_s']} img/s (model only, batch {SPEED_BATCH}, 1 thread)")
    candidates["fp32"] |= accuracy_gate(reference, reference, labels)
    torch.set_num_threads(available_cores())
    chosen = "fp32"
    for name in sorted(candidates, key=lambda name: candidates[name]["images_per_s"], reverse=True):
        if candidates[name]["images_per_s"] <= candidates["fp32"]["images_per_s"]:
            break
        candidates[name] |= accuracy_gate(reference, predictions(runners[name], inputs), labels)
        say(f"  {name} against fp32 on the check images: {candidates[name]}")
        if candidates[name]["passed"]:
            chosen = name
            break
    choice = {
        "weights_sha256": sha,
        "chosen": chosen,
        "why": why(chosen, candidates),
        "rule": RULE,
        "candidates": candidates,
        "scored_on": {"split": "validation", "images": len(images)},
        "speed": {"batch": SPEED_BATCH, "threads": 1, "seconds": SPEED_SECONDS,
                  "measured": "model only (features and logits), on preprocessed validation images"},
        "cpu": cpu,
        "cpu_kind": kind,
        "measured_by": measured_by,
        "seconds": round(time.perf_counter() - started, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    path = choice_path(weights, kind)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(choice, indent=2) + "\n")
    say(f"serving {chosen} on this kind of CPU: {choice['why']} ({choice['seconds']:.0f} s; {path})")
    return choice


def why(chosen: str, candidates: dict[str, dict]) -> str:
    """The choice in a sentence: what was faster and failed, and what the chosen one gives."""
    failed = [f"{name} ({figures['images_per_s']:.0f} img/s) failed: top-1 agreement "
              f"{figures['top1_agreement']:.3f}, BMA change {figures['bma_change']:+.4f}"
              for name, figures in candidates.items() if figures.get("passed") is False]
    speed = candidates[chosen]["images_per_s"] / candidates["fp32"]["images_per_s"]
    fastest = (f"{chosen} is the fastest that agrees with fp32" if chosen != "fp32"
               else "nothing faster agrees with fp32")
    return "; ".join([*failed, f"{fastest} ({speed:.1f}x fp32's speed)"])


def ensure_choice(weights: Path, say: Callable[[str], None] = print) -> dict | None:
    """The choice for this kind of CPU, measured now when there is none and the check images are
    here; None (fp32 is served) when they are not."""
    choice = release_choice(weights)
    if choice is not None:
        return choice
    try:
        return choose_here(weights, "make serve, first run on this kind of CPU", say)
    except (FileNotFoundError, ValueError) as missing:
        say(f"serving fp32, no precision measured for this kind of CPU: {missing}")
        return None
