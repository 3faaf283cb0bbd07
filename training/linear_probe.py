"""How much a network's features know about the eight classes: a linear probe on frozen features.

    python -m training.linear_probe --student model_store/skin_resnet34.pt --imagenet efficientnet-lite2

Each network's pooled features (the layer before its classifier) are taken once per image, at the
served framing, for the training and validation images; a logistic regression is fitted on the
training images, each weighted by 1 / n(class, source) as training draws them, and scored on
validation: balanced accuracy at argmax and melanoma sensitivity, per source too. The concatenation
of all the networks' features is probed as well: if it scores clearly above the best single network,
the others hold what that one lacks, which is what distilling their features would add to it.
``--imagenet`` takes an EfficientNet-Lite with its ImageNet weights and no fine-tuning, so its
features have never seen a skin image.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import settings
from training.engine import predict
from training.evaluate import FP32_CPU
from training.metrics import balanced_accuracy, sensitivity_specificity
from training.mixed_precision import Precision
from training.models import TEACHERS, build_student, build_teacher
from training.presets import evaluation_batches
from training.report import by_source
from training.run_setup import add_finished_run_arguments, finished_run_split, image_size
from training.sampling import sampling_weights

# Inverse regularisation strengths tried; every one is printed, so none is chosen on validation.
STRENGTHS = (0.0001, 0.001, 0.01)


def probe(train: np.ndarray, train_labels: np.ndarray, weights: np.ndarray, val: np.ndarray,
          strength: float) -> np.ndarray:
    """Validation logits of a logistic regression on standardised ``train`` features."""
    scaler = StandardScaler().fit(train)
    model = LogisticRegression(C=strength, max_iter=2000)
    model.fit(scaler.transform(train), train_labels, sample_weight=weights)
    return model.decision_function(scaler.transform(val))


def probe_figures(logits: np.ndarray, labels: np.ndarray, sources: list[str]) -> dict:
    """Validation BMA at argmax and melanoma sensitivity (None without melanomas), overall and per
    source."""
    predictions = logits.argmax(1)
    mel = sensitivity_specificity(labels, predictions)["MEL"]["sensitivity"]
    per_source = by_source(torch.from_numpy(logits), torch.from_numpy(labels), sources)
    return {"bma": round(balanced_accuracy(labels, predictions), 4), "mel": mel and round(mel, 3),
            "by_source": {source: {"bma": round(figures["balanced_accuracy"], 3),
                                   "mel": figures["sensitivity"]["MEL"] and round(figures["sensitivity"]["MEL"], 3)}
                          for source, figures in per_source.items()}}


def feature_network(name: str, student: Path, student_size: tuple[int, int]
                    ) -> tuple[torch.nn.Module, tuple[int, int]]:
    """A network whose output is its pooled features (the student's, or an ImageNet
    EfficientNet-Lite's), and its input size."""
    if name == "student":
        model = build_student(student)
        model.fc = torch.nn.Identity()
        return model, student_size
    model = build_teacher(name)
    model._fc = torch.nn.Identity()
    return model, settings.TEACHER_SIZE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, default=settings.WEIGHTS, help="a student's state dict")
    parser.add_argument("--imagenet", choices=sorted(TEACHERS), nargs="*", default=["efficientnet-lite2"],
                        help="EfficientNet-Lites with their ImageNet weights alone")
    parser.add_argument("--image-size", type=image_size, default=settings.IMAGE_SIZE, help="the student's input")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="of the feature forward passes (bf16 where the CPU has AMX)")
    add_finished_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    samples, split = finished_run_split(args)
    precision = FP32_CPU if args.precision == "fp32" else Precision("bf16", torch.device("cpu"))
    labels = {part: np.array([samples[i].label for i in getattr(split, part)]) for part in ("train", "val")}
    train_sources = [samples[i].source for i in split.train]
    val_sources = [samples[i].source for i in split.val]
    weights = sampling_weights(labels["train"].tolist(), train_sources, class_power=1.0).numpy()
    weights *= len(weights) / weights.sum()

    batches = {}
    features = {}
    for name in ["student", *args.imagenet]:
        network, size = feature_network(name, args.student, args.image_size)
        if precision.channels_last:
            network = network.to(memory_format=torch.channels_last)
        features[name] = {}
        for part in ("train", "val"):
            if (part, size) not in batches:
                batches[part, size] = evaluation_batches(samples, getattr(split, part), size, 64, f"decode {part}")
            features[name][part] = predict(network, batches[part, size], precision, args.colour_constancy)[0].numpy()
    if len(features) > 1:
        features["all, concatenated"] = {part: np.concatenate([f[part] for f in features.values()], axis=1)
                                         for part in ("train", "val")}
    figures = {name: {f"C={strength}": probe_figures(probe(f["train"], labels["train"], weights, f["val"], strength),
                                                      labels["val"], val_sources)
                      for strength in STRENGTHS}
               for name, f in features.items()}
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
