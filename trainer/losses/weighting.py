"""Uncertainty task weighting (Kendall, Gal & Cipolla, CVPR 2018; used by MOS, Liu et al. 2021, Eq. 7).

Each task i has a learned log-variance s_i = log σ_i² and

    L = Σ_i c_i · exp(−s_i) · L_i + ½ · s_i,    c_i = ½ for regression, 1 for classification

i.e. 1/(2σ²)·L + log σ for a regression task (Kendall's Eq. 7, the Gaussian likelihood) and
1/σ²·L + log σ for a classification task (Kendall's Eq. 10, the tempered softmax). Written in
s = log σ² as Kendall advises (no division by zero, s free to be negative). The ½ on regression
terms is the likelihood's, as MOS writes it; the ½ on s is log σ = ½ log σ². So at s = 0 the
total is Σ c_i L_i: the plain sum for classification tasks, half of it for regression tasks. At
the optimum of s_i every task's effective weight is c_i·exp(−s_i) = 1/(2 L_i).

`init` gives starting weights w_i = c_i·exp(−s_i) (e.g. the paper's λ1 = 100, λ2 = 10): s_i = log(c_i / w_i).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

REGRESSION = {"fld", "hpe"}  # L1 / Wing / geodesic: Gaussian-likelihood tasks; the rest are classification


class UncertaintyWeighting(nn.Module):
    def __init__(self, tasks: list[str], init: dict[str, float] | None = None):
        super().__init__()
        self.tasks = list(tasks)
        self.register_buffer("c", torch.tensor([0.5 if t in REGRESSION else 1.0 for t in self.tasks]))
        start = [math.log(float(c) / (init or {}).get(t, float(c))) for t, c in zip(self.tasks, self.c, strict=True)]
        self.log_var = nn.Parameter(torch.tensor(start, dtype=torch.float32))

    def weights(self) -> torch.Tensor:
        """The current effective weight c_i·exp(−s_i) of each task."""
        return self.c * torch.exp(-self.log_var)

    def forward(self, losses: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and, for logging, each task's weight and log-variance (no gradient)."""
        task_losses = torch.stack([losses[t].float() for t in self.tasks])
        total = (self.weights() * task_losses + 0.5 * self.log_var).sum()
        w, s = self.weights().detach(), self.log_var.detach()
        log = {f"weight_{t}": w[i] for i, t in enumerate(self.tasks)}
        return total, log | {f"log_var_{t}": s[i] for i, t in enumerate(self.tasks)}
