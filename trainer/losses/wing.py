"""Wing loss (Feng et al. 2018; Eq. 4), on landmark coordinates in input pixels.

wing(x) = w · ln(1 + |x| / ε)   if |x| < w
          |x| − C               otherwise,   C = w − w · ln(1 + w / ε);   w = 10, ε = 2

Reduction — a choice, the paper (Lee et al. 2024) is silent. Feng et al. and mmpose's `WingLoss`
(`torch.mean(torch.sum(losses, dim=[1, 2]), dim=0)`) sum over the 136 coordinates of a face and
average over the batch (`reduction="sum"`). pltd's default averages over coordinates too
(`reduction="mean"`, 136× smaller), because of λ1 = 100 in L_total = L_FR + 100·L_FLD + 10·L_HPE
(Eq. 1): at a 2-pixel error on every coordinate Wing is 10·ln 2 ≈ 6.9 per coordinate, so
100·L_FLD ≈ 690 with the mean but ≈ 94,000 with the sum, against an L_FR (CosFace, s = 64) of
≈ 10–45 and 10·L_HPE ≈ 30–300; with the sum the face-recognition term would carry about 1/10,000 of
the gradient and λ2 = 10 would no longer matter. With the mean the landmark term is still the
largest (≈ 20× L_FR at 2 px, ≈ 10× at 0.5 px) but the three terms stay within one to two orders of
magnitude, which is what weights of 1, 100 and 10 suggest. `sum` is there to reproduce mmpose.
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
