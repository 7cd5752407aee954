"""Wing loss (Feng et al. 2018; Eq. 4), on landmark coordinates in input pixels.

wing(x) = w · ln(1 + |x| / ε)   if |x| < w
          |x| − C               otherwise,   C = w − w · ln(1 + w / ε);   w = 10, ε = 2
"""

from __future__ import annotations

import math

import torch


def wing(pred: torch.Tensor, target: torch.Tensor, w: float = 10.0, eps: float = 2.0) -> torch.Tensor:
    """Mean Wing loss over all coordinates."""
    x = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()
