"""Train a SKIN release: a fine-tuned EfficientNet-Lite teacher, its soft targets over fixed views,
the ResNet34 student distilled from them, a short last phase at the served framing, then every
decision on validation (logit biases, test-time augmentation, temperature, referral threshold), one
scoring of the test split, and the release in model_store/ if it beats the shipped one.

    python -m training.train --output RUN --resume

Every stage writes its result into RUN and checkpoints within epochs, so ``--resume`` continues a
run stopped anywhere, in a later session too, and a finished stage is not run again.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

import settings
from contract.classes import CODES, NUM_CLASSES
from handler.checkpoint import WEIGHTS_FILE, save_release
from handler.cpus import CPU_FLAGS, cpu_info
from training.calibration import probabilities_at
from training.datasets import Sample
from training.decisions import (
    HAM_SOURCE,
    MEL_FLOOR,
    beats,
    calibration,
    choose_logit_bias,
    served_figures,
    tta_decision,
)
from training.engine import predict
from training.evaluate import shipped_val_figures
from training.losses import DistillationLoss, class_weights
from training.mixed_precision import Precision, choose_precision
from training.models import DEFAULT_TEACHER, TEACHER_FROZEN_BLOCKS, TEACHERS, build_student, build_teacher
from training.phase import Phase, Schedule
from training.presets import BatchAugment, ImageBatches, StoredViewBatches, evaluation_batches, training_batches
from training.referral import referral_entry
from training.release import release_metadata
from training.report import build_report, by_source, write_model_report
from training.run_setup import git_commit, image_size, keep_run_arguments, seed_everything, to_device
from training.sampling import EpochSampler
from training.shortcuts import ALLOWED_CIRCLE_SHIFT, circle_shift, circle_table
from training.soft_targets import TARGETS_FILE, compute_soft_targets
from training.splits import Split, load_split
from training.teacher import REPORT_FILE, fine_tune_teacher

# How much better than the shipped release, in validation BMA, a teacher must be to be distilled
# from: a student rarely goes past its teacher, so one no better than the release is not worth it.
TEACHER_MARGIN = 0.01
# The student schedule of release 3.0, which saw fresh views every epoch.
STUDENT_EPOCHS = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS),
                        help="data directories, each in any layout training.datasets reads; each is "
                             "split by lesion on its own")
    parser.add_argument("--output", type=Path, default=Path("runs/train"),
                        help="the run's checkpoints, soft targets and TensorBoard logs")
    parser.add_argument("--model-store", type=Path, default=settings.MODEL_STORE)
    parser.add_argument("--docs", type=Path, default=Path("docs"),
                        help="where the test report JSON and confusion plot go")
    parser.add_argument("--version", default=settings.RELEASE_VERSION, help="release version (the archive version)")
    parser.add_argument("--image-size", type=image_size, default=settings.IMAGE_SIZE,
                        help="the student's (served) input, HEIGHTxWIDTH, or one number for a square")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"the student's epochs (default {STUDENT_EPOCHS}; when distilling, as many as "
                             "there are stored views if fewer: student_epochs)")
    parser.add_argument("--epoch-samples", type=int, default=0,
                        help="images drawn per epoch (0: the size of the training split)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4, help="the student's peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="fraction of each phase spent warming the learning rate up")
    parser.add_argument("--mixup", type=float, default=0.2, help="mixup Beta(a, a); 0 turns it off")
    parser.add_argument("--class-power", type=float, default=0.5,
                        help="draw each class in proportion to count^(1-p) and weight its loss by "
                             "count^-p, so the classes count equally; within a class every source "
                             "is drawn equally often")
    parser.add_argument("--source-balance", action=argparse.BooleanOptionalAction, default=True,
                        help="within a class, draw every source (clinic) equally often")
    parser.add_argument("--vignette", type=float, default=0.5,
                        help="share of training views given a dermatoscope's circle")
    parser.add_argument("--held-out-source", default=None,
                        help="leave this source out of training and validation and test on all of its "
                             "images: a stand-in for a clinic the model has never seen")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="the student's weight average")
    parser.add_argument("--checkpoint-minutes", type=float, default=10)
    parser.add_argument("--init", type=Path, default=None,
                        help="warm start: a SKIN release's weights, or a local torchvision resnet34 "
                             "ImageNet state dict (its fc is skipped)")
    parser.add_argument("--teacher-arch", choices=sorted(TEACHERS), default=DEFAULT_TEACHER)
    parser.add_argument("--teacher-weights", type=Path, default=None,
                        help="a fine-tuned teacher's state dict to use instead of fine-tuning one")
    parser.add_argument("--teacher-size", type=image_size, default=settings.TEACHER_SIZE)
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--teacher-lr", type=float, default=8e-4)
    parser.add_argument("--teacher-ema-decay", type=float, default=0.998)
    parser.add_argument("--teacher-frozen-blocks", type=int, default=TEACHER_FROZEN_BLOCKS,
                        help="MBConv blocks after the stem that keep their ImageNet weights")
    parser.add_argument("--views", type=int, default=24,
                        help="augmented views per training image that the teacher labels once")
    parser.add_argument("--soft-targets", type=Path, default=None,
                        help="another run's soft targets (same data, seed and views) instead of a teacher")
    parser.add_argument("--kd-alpha", type=float, default=0.0,
                        help="weight of the distillation term; 0 (release 3.0) trains on labels alone, "
                             "with no teacher")
    parser.add_argument("--kd-temperature", type=float, default=2.0)
    parser.add_argument("--finish-epochs", type=int, default=1,
                        help="a last phase at the served framing (no zoom or free rotation), with "
                             "labels alone; kept only if validation prefers it")
    parser.add_argument("--finish-lr", type=float, default=1e-4)
    parser.add_argument("--tta-decision", action=argparse.BooleanOptionalAction, default=True,
                        help="measure on validation whether eight-view test-time augmentation pays")
    parser.add_argument("--mel-floor", type=float, default=MEL_FLOOR,
                        help="validation melanoma sensitivity that the logit biases must keep")
    parser.add_argument("--colour-constancy", action=argparse.BooleanOptionalAction, default=True,
                        help="Shades of Gray (p=6) before the network, in training and serving")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="auto: time a few steps of each on this machine and keep the faster")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only this many images (stratified by the split); for smoke runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUTPUT")
    parser.add_argument("--any-teacher", action="store_true",
                        help="distil even from a teacher that does not clearly beat the shipped "
                             "release on validation")
    parser.add_argument("--always-ship", action="store_true",
                        help="write the release even if the shipped one scores better on validation")
    parser.add_argument("--never-ship", action="store_true",
                        help="keep the release in OUTPUT/release only (ablations, experiments)")
    parser.add_argument("--targets-only", action="store_true",
                        help="stop once the teacher's soft targets are written: one member of an "
                             "ensemble (python -m training.teacher_ensemble averages them)")
    args = parser.parse_args(argv)
    if args.targets_only and not args.kd_alpha:
        parser.error("--targets-only needs a teacher: give --kd-alpha")
    return args


def student_epochs(requested: int | None, targets: dict | None) -> int:
    """``--epochs``, or by default STUDENT_EPOCHS, and no more than the stored views a distilled
    student learns from: one that sees the same few views many times memorises them. The targets record
    their own views, since another run (``--soft-targets``, an ensemble) may have made them."""
    if requested is not None:
        return requested
    return min(STUDENT_EPOCHS, targets["views"]) if targets else STUDENT_EPOCHS


def reason_not_to_ship(report: dict, shipped: dict | None) -> str | None:
    """Why a finished run must not replace the shipped release, or None when it may: it must beat
    the release on validation, and an added dermatoscope circle must hardly move its melanoma calls
    there."""
    if not beats(report["operating_point"], shipped):
        return f"on this validation split it scores {report['operating_point']}, the shipped release {shipped}"
    if report["val_circle_shift"] > ALLOWED_CIRCLE_SHIFT:
        return (f"an added circle moves its validation melanoma calls by {report['val_circle_shift']:.3f} "
                f"(at most {ALLOWED_CIRCLE_SHIFT}): {report['val_mel_calls_with_circle']}")
    return None


def require_teacher_worth_it(report: dict | None, shipped: dict | None, args: argparse.Namespace) -> None:
    """Stop the run unless the teacher clearly beats the shipped release on validation (a student
    rarely goes past its teacher); ``--any-teacher`` and a given ``--teacher-weights`` skip this."""
    if report is None or args.any_teacher or beats(report["operating_point"], shipped, TEACHER_MARGIN):
        return
    raise SystemExit(f"the teacher ({report['arch']}, with a release's logit biases: {report['operating_point']}; "
                     f"its report in {args.output}) does not beat the shipped release ({shipped}) by "
                     f"{TEACHER_MARGIN} BMA, on {HAM_SOURCE}'s melanomas and on the referral flag's specificity: "
                     "the student would learn no more than the release knows. Fine-tune another --teacher-arch, "
                     "or pass --any-teacher.")


def teacher_targets(args: argparse.Namespace, samples: list[Sample], split: Split, writer: SummaryWriter,
                    shipped: dict | None) -> tuple[dict, dict | None]:
    """The soft targets file's contents (views and teacher logits) and the teacher's report (None
    for a given ``--teacher-weights``); fine-tunes the teacher first unless it is given, and labels
    the views only with a teacher worth distilling from."""
    path = args.soft_targets or args.output / TARGETS_FILE
    report_path = args.output / REPORT_FILE
    if args.soft_targets or (args.resume and path.exists()):
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        require_teacher_worth_it(report, shipped, args)
        return torch.load(path, weights_only=True), report
    train = training_batches(samples, split.train, view_augment(args, args.teacher_size), args.batch_size,
                             args.epoch_samples, args.class_power, args.seed, args.source_balance)
    precision, speeds = choose_precision(args.precision, torch.device(args.device),
                                         lambda: build_teacher(args.teacher_arch, args.teacher_frozen_blocks),
                                         (args.batch_size, 3, *args.teacher_size))
    print(f"teacher precision {precision.name} {speeds}", flush=True)
    report = None
    if args.teacher_weights:
        teacher = to_device(build_teacher(args.teacher_arch), precision)
        teacher.load_state_dict(torch.load(args.teacher_weights, map_location="cpu", weights_only=True))
    else:
        val = evaluation_batches(samples, split.val, args.teacher_size, args.batch_size * 2, "decode val")
        teacher, report = fine_tune_teacher(args, train, val, samples, split.val, precision, writer)
    require_teacher_worth_it(report, shipped, args)
    targets = compute_soft_targets(teacher, train.images, train.augment, args.views, precision,
                                   args.colour_constancy, path, args.seed, args.batch_size * 2,
                                   args.checkpoint_minutes)
    return targets, report


def view_augment(args: argparse.Namespace, size: tuple[int, int]) -> BatchAugment:
    """The training views, at ``size``: the teacher's and the student's differ in size alone."""
    return BatchAugment(size, vignette=args.vignette, seed=args.seed)


def student_batches(args: argparse.Namespace, samples: list[Sample], split: Split, targets: dict | None
                    ) -> tuple[ImageBatches, ImageBatches]:
    """The student's training batches (the stored views with their teacher logits, or fresh views
    with labels alone when there are no ``targets``) and the last phase's batches (fresh views at
    the served framing, labels alone), over one cache."""
    fresh = training_batches(samples, split.train, view_augment(args, args.image_size), args.batch_size,
                             args.epoch_samples, args.class_power, args.seed, args.source_balance)
    served_framing = BatchAugment(args.image_size, zoom=(0.9, 1.1), rotate=False, vignette=args.vignette,
                                  seed=args.seed)
    finishing = ImageBatches(fresh.images, fresh.labels, args.batch_size,
                             EpochSampler(fresh.sampler.weights, len(fresh.sampler), args.seed + 1),
                             served_framing, seed=args.seed + 1)
    if targets is None:
        return fresh, finishing
    return StoredViewBatches(fresh.images, fresh.labels, args.batch_size, fresh.sampler, fresh.augment,
                             targets["params"], targets["logits"], seed=args.seed), finishing


def train_student(args: argparse.Namespace, distilled: ImageBatches, finishing: ImageBatches,
                  val: ImageBatches, val_sources: list[str], precision: Precision, writer: SummaryWriter
                  ) -> tuple[torch.nn.Module, list[Phase]]:
    """The student distilled over the stored views, then the last phase at the served framing;
    whichever of the two validation prefers at the operating point."""
    counts = torch.bincount(distilled.labels, minlength=NUM_CLASSES).tolist()
    criterion = DistillationLoss(class_weights(counts, args.class_power), args.kd_alpha,
                                 args.kd_temperature).to(precision.device)
    student = to_device(build_student(args.init), precision)
    phases = [Phase("student", student, Schedule(args.lr, args.epochs, args.warmup, args.weight_decay),
                    len(distilled), args.output, writer, args.ema_decay, args.checkpoint_minutes, args.mel_floor)]
    if args.resume:
        phases[0].resume()
    phases[0].run(distilled, val, criterion, precision, args.colour_constancy, args.mixup, val_sources)
    student = phases[0].load_best()
    if args.finish_epochs:
        phases.append(Phase("finish", student,
                            Schedule(args.finish_lr, args.finish_epochs, args.warmup, args.weight_decay),
                            len(finishing), args.output, writer, args.ema_decay, args.checkpoint_minutes,
                            args.mel_floor))
        if args.resume:
            phases[1].resume()
        phases[1].run(finishing, val, criterion, precision, args.colour_constancy, val_sources=val_sources)
        if phases[1].best_score > phases[0].best_score:
            return phases[1].load_best(), phases
        student = phases[0].load_best()
    return student, phases


def fold_bias(model: torch.nn.Module, bias: np.ndarray) -> None:
    """Add per-class logit biases into the last layer, so every consumer of the weights (the
    handler, the gate, evaluation) applies them without knowing."""
    with torch.no_grad():
        model.fc.bias += torch.tensor(bias, dtype=model.fc.bias.dtype, device=model.fc.bias.device)


def decide_and_test(model: torch.nn.Module, val: ImageBatches, test: ImageBatches, precision: Precision,
                    args: argparse.Namespace, val_sources: list[str], test_sources: list[str]) -> dict:
    """Every choice on validation (logit biases, folded into the model; test-time augmentation;
    temperature; referral threshold) and the circle check, then the test split scored once. Once
    test-time augmentation is chosen, every later answer averages the eight views, as the handler
    then serves them."""
    cc = args.colour_constancy
    val_logits, val_labels = predict(model, val, precision, cc)
    bias, bias_figures = choose_logit_bias(val_logits, val_labels, args.mel_floor)
    tta = tta_decision(model, val, precision, cc, bias) if args.tta_decision else None
    dihedral = bool(tta and tta["ships"])
    fold_bias(model, bias)
    val_logits, val_labels = predict(model, val, precision, cc, dihedral)
    circle = circle_table(model, val.images, val_labels, val_logits, precision, cc, dihedral=dihedral)
    temperature, threshold = calibration(val_logits, val_labels)
    test_logits, test_labels = predict(model, test, precision, cc, dihedral)
    report = build_report(test_logits, test_labels, temperature) | {
        "split": "test", "by_source": by_source(test_logits, test_labels, test_sources),
        "val_by_source": by_source(val_logits, val_labels, val_sources),
        "operating_point": served_figures(val_logits, val_labels, val_sources, temperature, threshold),
        "val_balanced_accuracy": bias_figures["before"]["balanced_accuracy"],
        "logit_bias": {"values": dict(zip(CODES, bias.round(2).tolist()))} | bias_figures,
        "val_mel_calls_with_circle": circle, "val_circle_shift": circle_shift(circle),
        "dihedral_tta_val_balanced_accuracy": tta}
    report["referral"] = referral_entry(threshold, probabilities_at(
        {"validation": (val_logits, val_labels), "test": (test_logits, test_labels)}, temperature))
    return report


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    command = shlex.join([Path(sys.executable).name, "-m", "training.train", *(argv or sys.argv[1:])])
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    keep_run_arguments(args)
    writer = SummaryWriter(log_dir=str(args.output / "tensorboard"))
    samples, split, dedupe = load_split(args.data, args.seed, deduplicated=True)
    if args.limit:
        split = split.head(args.limit / len(samples))
    if args.held_out_source:
        split = split.leave_out([s.source == args.held_out_source for s in samples])
    print(f"data: {', '.join(map(str, args.data))}: {len(samples)} images after dropping copies "
          f"({dedupe.as_dict()}); split {split.sizes()}", flush=True)

    shipped = shipped_val_figures(args.model_store / WEIGHTS_FILE, samples, split.val, args.mel_floor)
    print(f"the shipped release on this validation split: {shipped}", flush=True)
    targets, teacher = (teacher_targets(args, samples, split, writer, shipped) if args.kd_alpha
                        else (None, None))
    if args.targets_only:
        print(f"soft targets of {targets['views']} views in {args.output}: --targets-only stops here", flush=True)
        writer.close()
        return {"soft_targets": targets, "teacher": teacher}
    cpu = cpu_info()
    precision, speeds = choose_precision(args.precision, torch.device(args.device), build_student,
                                         (args.batch_size, 3, *args.image_size))
    print(f"CPU {cpu['model']} ({' '.join(cpu['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}); "
          f"student precision {precision.name} {speeds}", flush=True)
    args.epochs = student_epochs(args.epochs, targets)
    distilled, finishing = student_batches(args, samples, split, targets)
    val = evaluation_batches(samples, split.val, args.image_size, args.batch_size * 2, "decode val")
    val_sources = [samples[i].source for i in split.val]
    student, phases = train_student(args, distilled, finishing, val, val_sources, precision, writer)

    # Decide and score in the precision the handler serves in, not the one training chose.
    served = Precision("fp16" if precision.device.type == "cuda" else "fp32", precision.device)
    student = student.float().to(memory_format=torch.contiguous_format).eval()
    test = evaluation_batches(samples, split.test, args.image_size, args.batch_size * 2, "decode test")
    report = decide_and_test(student, val, test, served, args, val_sources,
                             [samples[i].source for i in split.test])
    report["teacher"] = teacher
    referral = report.pop("referral")
    metadata = release_metadata(
        version=args.version, image_size=args.image_size, colour_constancy=args.colour_constancy,
        data_dirs=args.data, seed=args.seed, samples=samples, split=split, report=report,
        temperature=report["temperature"], referral=referral, commit=git_commit(),
        training={"mixup": args.mixup, "batch_size": args.batch_size, "device": str(precision.device),
                  "precision": precision.name,
                  "precision_measured_images_per_second": speeds, "cpu": cpu,
                  "dedupe": dedupe.as_dict(), "views": targets and targets["views"],
                  "phases": {phase.name: {"epochs": len(phase.history), "best_val_operating_bma": phase.best_score,
                                          "minutes": round(phase.seconds / 60, 1), "history": phase.history}
                             for phase in phases},
                  "teacher": teacher["arch"] if teacher else args.teacher_arch, "command": command})
    summary = {"val_bma": report["val_balanced_accuracy"], "test_bma": report["balanced_accuracy"],
               "test_by_source": {k: {"bma": v["balanced_accuracy"], "mel": v["sensitivity"]["MEL"]}
                                  for k, v in report["by_source"].items()},
               "mel_sensitivity": report["per_class"]["MEL"]["sensitivity"],
               "referral": {k: referral["test"][k] for k in ("threshold", "sensitivity", "specificity", "auroc")},
               "teacher_val_bma": teacher and teacher["val_balanced_accuracy"],
               "logit_bias": report["logit_bias"], "tta": report["dihedral_tta_val_balanced_accuracy"],
               "val_circle_shift": report["val_circle_shift"],
               "ece": [report["ece_before_calibration"], report["ece_after_calibration"]],
               "shipped_on_validation": shipped, "minutes_this_session": round((time.monotonic() - started) / 60, 1)}
    (args.output / "summary.json").write_text(json.dumps(summary | {"metadata": metadata}, indent=2) + "\n")
    # The run's folder keeps its release whether or not it ships, for `make evaluate` and
    # `make compare WEIGHTS=RUN/release/...` to measure it against the shipped one.
    state = student.cpu().state_dict()
    kept = save_release(state, metadata, args.output / "release")
    print(f"this run's release: {kept}", flush=True)
    refusal = reason_not_to_ship(report, shipped)
    if args.never_ship:
        print(f"not shipped to {args.model_store}: --never-ship", flush=True)
    elif refusal is None or args.always_ship:
        save_release(state, metadata, args.model_store)
        write_model_report(report, referral, metadata, args.docs / "model_report.json")
    else:
        print(f"not shipped to {args.model_store}: {refusal}", flush=True)
    writer.close()
    print(json.dumps(summary, indent=2), flush=True)
    return metadata


if __name__ == "__main__":
    main()
