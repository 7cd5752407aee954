"""L_HPE (Eq. 2): mean absolute error over yaw, pitch and roll, in degrees."""

from __future__ import annotations

import torch


def hpe_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()
