"""Temperature scaling (Guo et al., 2017) fitted on validation logits."""
from __future__ import annotations

import torch


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` on ``labels``."""
    # Optimise log T so that T stays positive without a constraint.
    log_temperature = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")
    logits, labels = logits.detach().float(), labels.detach().long()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_temperature.detach().exp())
