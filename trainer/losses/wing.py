"""Wing loss (Feng et al. 2018; Eq. 4), on landmark coordinates as fractions of the input side.

wing(x) = w · ln(1 + |x| / ε)   if |x| < w
          |x| − C               otherwise,   C = w − w · ln(1 + w / ε);   w = 10, ε = 2

Units — the paper's numbers decide them (Lee et al. 2024, Table 10, the loss convergence ratio
L_FR : λ1·L_FLD : λ2·L_HPE). pltd's trainer gives Wing fractions of the input side (1 px at 112 px
= 0.0089), so with w = 10, ε = 2 every error is on the logarithmic branch, nearly linear there:
wing ≈ (w/ε)·|x| = 5·|x|, 0.045 per coordinate at 1 px. Then λ1 = 100 makes 100·L_FLD ≈ 4.5 beside
an L_FR ≈ 10 and 10·L_HPE ≈ 20 at 2°: the paper's 0.31 : 0.15 : 0.54. In input pixels the same
error gives 10·ln 1.5 ≈ 4.05 per coordinate, 100·L_FLD ≈ 405, 93 % of the total, which no row of
Table 10 shows (`tests/trainer/test_loss_balance.py` checks all 16 rows; docs/training.md).

Reduction — a choice, the paper is silent. Feng et al. and mmpose's `WingLoss`
(`torch.mean(torch.sum(losses, dim=[1, 2]), dim=0)`) sum over the 136 coordinates of a face and
average over the batch (`reduction="sum"`). pltd averages over coordinates too (`reduction="mean"`,
136× smaller), again because of Table 10: with the sum, 100·L_FLD at 1 px would be ≈ 600 against
L_FR ≈ 10. `sum` is there to reproduce mmpose.
"""

from __future__ import annotations

import math

import torch


def wing(pred: torch.Tensor, target: torch.Tensor, w: float = 10.0, eps: float = 2.0,
         reduction: str = "mean") -> torch.Tensor:  # fmt: skip
    """Wing loss of (B, …) tensors: `mean` over all coordinates (pltd), or `sum` over each sample's
    coordinates and mean over the batch (Feng et al., mmpose)."""
    x = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    loss = torch.where(x < w, w * torch.log1p(x / eps), x - c)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.flatten(1).sum(dim=1).mean()
    raise ValueError(f"wing: reduction must be 'mean' or 'sum', not {reduction!r}")
