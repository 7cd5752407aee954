"""Geodesic rotation loss (Huynh 2009, metric Φ6; 6DRepNet's `GeodesicLoss`, LPONet's pose loss):

    θ(R1, R2) = arccos((tr(R1 · R2ᵀ) − 1) / 2),    the angle of the rotation R1 · R2ᵀ

averaged over the batch, in degrees so that λ2 = 10 weighs it on the same scale as the paper's
L_HPE (a mean absolute angle in degrees). The cosine is clamped to [−1 + ε, 1 − ε] as 6DRepNet does
(thohemp/6DRepNet `sixdrepnet/loss.py`, commit 445cf727e302e5785f961206869fc07953420f89): arccos'
derivative is infinite at ±1, so an exact prediction would give a NaN gradient.
"""

from __future__ import annotations

import math

import torch

from pltd.pose import rotation_torch


def geodesic_deg(r1: torch.Tensor, r2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(B, 3, 3), (B, 3, 3) → (B,) angles in degrees."""
    m = r1.float() @ r2.float().transpose(1, 2)
    cos = (m.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    return torch.acos(cos.clamp(-1 + eps, 1 - eps)) * (180.0 / math.pi)


def geodesic_loss(r_pred: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Mean geodesic angle in degrees between predicted rotations and the labels' (yaw, pitch, roll),
    built in pltd's one convention (`pltd.pose.rotation_torch`, 300W-LP's)."""
    return geodesic_deg(r_pred, rotation_torch(pose.float())).mean()
