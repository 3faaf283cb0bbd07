"""Losses: class-weighted cross-entropy on (possibly mixed) labels, optionally with distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def class_weights(counts: list[int], power: float) -> torch.Tensor:
    """Per-class weights proportional to ``count ** -power``, scaled to mean 1 over the classes."""
    counts_t = torch.tensor(counts, dtype=torch.float).clamp(min=1)
    weights = counts_t.pow(-power)
    return weights * len(counts) / weights.sum()


def mixed_logits(logits: torch.Tensor, partner: torch.Tensor, weight: float,
                 temperature: float) -> torch.Tensor:
    """Logits whose softmax at ``temperature`` is the ``weight`` : 1 - ``weight`` mixture of the
    distributions of ``logits`` and ``logits[partner]``: a mixup pair's teacher target, when the
    teacher saw the two images apart."""
    probabilities = (weight * F.softmax(logits / temperature, dim=1)
                     + (1 - weight) * F.softmax(logits[partner] / temperature, dim=1))
    return temperature * probabilities.clamp(min=1e-12).log()


class DistillationLoss(torch.nn.Module):
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(teacher_T || student_T)`` (Hinton et al.);
    with no teacher logits it is the plain (weighted) cross-entropy. For a mixup batch the
    cross-entropy is ``weight`` on ``labels`` and the rest on ``partners``."""

    def __init__(self, weight: torch.Tensor | None = None, alpha: float = 0.5,
                 temperature: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.alpha, self.temperature = alpha, temperature

    def forward(self, logits: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None = None, partners: torch.Tensor | None = None,
                mix_weight: float = 1.0) -> torch.Tensor:
        hard = F.cross_entropy(logits, labels, weight=self.weight)
        if partners is not None and mix_weight < 1:
            hard = mix_weight * hard + (1 - mix_weight) * F.cross_entropy(logits, partners, weight=self.weight)
        if teacher_logits is None:
            return hard
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                        reduction="batchmean", log_target=True)
        return (1 - self.alpha) * hard + self.alpha * t * t * soft
