"""What every training command sets up the same way: the default data, the input-size argument,
seeds, the run's recorded arguments, and moving a model to its device and memory layout."""
from __future__ import annotations

import argparse
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

import settings
from imaging.framing import input_shape
from training.datasets import Sample
from training.mixed_precision import Precision
from training.splits import Split, load_split


def image_size(text: str) -> tuple[int, int]:
    """``96x128`` (height x width) or ``112`` (a square)."""
    height, _, width = text.partition("x")
    return input_shape((int(height), int(width or height)))


def add_finished_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What a command that scores a finished run needs to see its images as the run did: its data,
    its seed (which made the split) and its colour constancy; and how many threads to score with."""
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--seed", type=int, default=0, help="the run's seed, which made its split")
    parser.add_argument("--colour-constancy", action=argparse.BooleanOptionalAction, default=True,
                        help="as the run trained")
    parser.add_argument("--threads", type=int, default=0)


def finished_run_split(args: argparse.Namespace) -> tuple[list[Sample], Split]:
    """The samples and the deduplicated split of ``add_finished_run_arguments``' run, with the
    threads set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    samples, split, _ = load_split(args.data, args.seed, deduplicated=True)
    return samples, split


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


ARGUMENTS_FILE = "arguments.json"
# Where a run lives, how it is carried out and how long it goes on (a finished run may be given
# more epochs), not what it learns: these may change between resumes.
NOT_RECORDED = frozenset({"output", "resume", "threads", "device", "checkpoint_minutes", "soft_targets",
                          "model_store", "docs", "any_teacher", "always_ship", "epochs", "finish_epochs",
                          "targets_only"})


def keep_run_arguments(args: argparse.Namespace) -> None:
    """Record what shapes the run in its folder; a resume with other values stops, since a run
    continued under other defaults (a later checkout's input size, say) would silently be two runs.
    An argument the run did not record is new since it started, and assumed to keep its behaviour."""
    recorded = json.loads(json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in NOT_RECORDED},
                                     default=str))
    path = args.output / ARGUMENTS_FILE
    if args.resume and path.exists():
        before = json.loads(path.read_text())
        changed = {k: (before[k], v) for k, v in recorded.items() if k in before and before[k] != v}
        if changed:
            flags = ", ".join(f"--{k.replace('_', '-')} was {old}, now {new}" for k, (old, new) in changed.items())
            raise SystemExit(f"{args.output} was started with other arguments ({flags}): resume it with "
                             f"the arguments in {path}, or give a new --output")
        return
    path.write_text(json.dumps(recorded, indent=2) + "\n")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def to_device(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    model = model.to(precision.device)
    return model.to(memory_format=torch.channels_last) if precision.channels_last else model
