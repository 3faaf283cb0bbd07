"""Whether an ensemble of fine-tuned teachers pays on validation, and the soft targets to distil from.

    python -m training.teacher_ensemble --teachers RUN_A RUN_B [RUN_C ...] [--output RUN]

Each ``--teachers`` folder is a training run that finished its teacher (``teacher_best.pt`` and
``teacher_report.json``), all on the same data, seed and ``--views``, so that their stored views
are the same views; with ``--output``, each must have finished its soft targets too. The ensemble
answers with the mean of its members' probabilities. Every member and every ensemble of two or
more of them are scored on the same validation images, at argmax and at the operating point a
release is served at, and the one with the highest BMA there is kept: members and ensembles by the
same measure (a weak member can pull an ensemble below a pair without it). The melanomas
and the referral flag are held by the student's own ship rule, since what a teacher passes on is
its ranking, and a teacher that misses the flag's bar by a few lesions still teaches. With ``--output``,
the kept teacher's report and soft targets go into RUN, where
``make train-cpu RUN=RUN TRAIN_FLAGS="--kd-alpha 0.5"`` distils the student from them without
fine-tuning a teacher again.
"""
from __future__ import annotations

import argparse
import json
import shutil
from itertools import combinations
from pathlib import Path

import torch
import torch.nn.functional as F

from training.decisions import MEL_FLOOR
from training.engine import predict
from training.evaluate import FP32_CPU
from training.models import build_teacher
from training.presets import evaluation_batches
from training.run_setup import add_finished_run_arguments, finished_run_split
from training.soft_targets import TARGETS_FILE
from training.teacher import REPORT_FILE, logits_report, teacher_weights


def ensemble_logits(members: list[torch.Tensor]) -> torch.Tensor:
    """The ensemble's answer as log-probabilities: the log of its members' mean probability. A mean
    of logits (a geometric mean) would let one member that is sure of another class veto a class the
    others find likely; a mean of probabilities gives each member at most its share."""
    probabilities = torch.stack([F.softmax(logits.float(), dim=-1) for logits in members]).mean(0)
    return probabilities.clamp_min(torch.finfo(torch.float32).tiny).log()


def ensemble_targets(members: list[dict]) -> dict:
    """One soft targets file from several over the same stored views."""
    first = members[0]
    for other in members[1:]:
        if first["params"].keys() != other["params"].keys() or not all(
                torch.equal(first["params"][key], other["params"][key]) for key in first["params"]):
            raise SystemExit("the teachers' soft targets are over different views: "
                             "their runs must share data, seed and --views")
    logits = ensemble_logits([member["logits"] for member in members]).half()
    return {"params": first["params"], "done": first["done"], "views": first["views"], "logits": logits}


def candidate_reports(logits: dict[Path, torch.Tensor], reports: dict[Path, dict], labels: torch.Tensor,
                      val_sources: list[str], mel_floor: float) -> dict[tuple[Path, ...], dict]:
    """The report of each member (``reports``) and of each ensemble of two or more members, keyed by
    their runs, fewest members first."""
    candidates = {}
    for size in range(1, len(logits) + 1):
        for runs in combinations(logits, size):
            candidates[runs] = reports[runs[0]] if size == 1 else logits_report(
                ensemble_logits([logits[run] for run in runs]), labels,
                "+".join(reports[run]["arch"] for run in runs), val_sources, mel_floor)
    return candidates


def operating_bma(report: dict) -> float:
    return report["operating_point"]["balanced_accuracy"]


def candidate_name(runs: tuple[Path, ...]) -> str:
    return " + ".join(map(str, runs))


def best_candidate(candidates: dict[tuple[Path, ...], dict]) -> tuple[Path, ...]:
    """The runs of the candidate with the highest BMA at the operating point; of tied ones the
    first, so the fewest teachers (``candidate_reports`` lists them so)."""
    return max(candidates, key=lambda runs: operating_bma(candidates[runs]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", type=Path, nargs="+", required=True,
                        help=f"runs with a finished teacher, its {REPORT_FILE} and {TARGETS_FILE}")
    parser.add_argument("--output", type=Path, help="the student's run folder; none: only compare")
    parser.add_argument("--mel-floor", type=float, default=MEL_FLOOR, help="as the student's run will use")
    add_finished_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    unfinished = [str(run) for run in args.teachers if not (run / TARGETS_FILE).exists()]
    if args.output and unfinished:
        raise SystemExit(f"no {TARGETS_FILE} yet in {', '.join(unfinished)}: resume those runs past their "
                         "soft targets, or leave out --output to compare the teachers only")
    samples, split = finished_run_split(args)
    val_sources = [samples[i].source for i in split.val]
    reports, logits, batches_by_size = {}, {}, {}
    for run in args.teachers:
        recorded = json.loads((run / REPORT_FILE).read_text())
        teacher = build_teacher(recorded["arch"])
        teacher.load_state_dict(torch.load(teacher_weights(run), map_location="cpu", weights_only=True))
        size = tuple(recorded["image_size"])
        if size not in batches_by_size:
            batches_by_size[size] = evaluation_batches(samples, split.val, size, 64, f"decode val at {size}")
        logits[run], labels = predict(teacher, batches_by_size[size], FP32_CPU, args.colour_constancy)
        reports[run] = logits_report(logits[run], labels, recorded["arch"], val_sources, args.mel_floor)
    candidates = candidate_reports(logits, reports, labels, val_sources, args.mel_floor)
    for runs, report in candidates.items():
        print(f"{candidate_name(runs)}: validation BMA {report['val_balanced_accuracy']:.4f}; "
              f"with a release's logit biases {report['operating_point']}", flush=True)
    kept_runs = best_candidate(candidates)
    print(f"kept: {candidate_name(kept_runs)} (the highest BMA at the operating point)", flush=True)
    kept = candidates[kept_runs] | {
        "members": {str(run): reports[run] for run in kept_runs},
        "not_kept": {candidate_name(runs): report["operating_point"]
                     for runs, report in candidates.items() if runs != kept_runs}}
    if args.output is None:
        return kept
    args.output.mkdir(parents=True, exist_ok=True)
    if len(kept_runs) > 1:
        members = [torch.load(run / TARGETS_FILE, weights_only=True) for run in kept_runs]
        torch.save(ensemble_targets(members), args.output / TARGETS_FILE)
    else:
        shutil.copyfile(kept_runs[0] / TARGETS_FILE, args.output / TARGETS_FILE)
    (args.output / REPORT_FILE).write_text(json.dumps(kept, indent=2) + "\n")
    return kept


if __name__ == "__main__":
    main()
