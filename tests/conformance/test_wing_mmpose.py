"""Conformance: the Wing loss against mmpose's `WingLoss` and Feng et al.'s formula.

Reference: open-mmlab/mmpose, `mmpose/models/losses/regression_loss.py`, commit
041cb806a82a4a692010fd839c62d1db1558dd72: C = ω·(1 − ln(1 + ω/ε)), losses = ω·ln(1 + δ/ε) if
δ < ω else δ − C, reduced by `torch.mean(torch.sum(losses, dim=[1, 2]), dim=0)` (sum over the
K×D coordinates of a sample, mean over the batch), ω = 10, ε = 2 by default.
"""

from __future__ import annotations

import math

import pytest
import torch

from pltd.trainer.losses.wing import wing


def _mmpose_wing(pred, target, omega=10.0, epsilon=2.0):
    c = omega * (1.0 - math.log(1.0 + omega / epsilon))
    delta = (target - pred).abs()
    losses = torch.where(delta < omega, omega * torch.log(1.0 + delta / epsilon), delta - c)
    return torch.mean(torch.sum(losses, dim=[1, 2]), dim=0)


def test_sum_reduction_equals_mmpose_numbers():
    """Numbers from mmpose's formula (68 points × 2 coordinates), computed by hand:
    C = 10·(1 − ln 6) = −7.917594692280550.
    Sample 1, every coordinate off by 1 px: 136 · 10·ln 1.5 = 551.4325470271035.
    Sample 2, every coordinate off by 20 px: 136 · (20 − C) = 3796.7928781501546.
    Sample 3, 68 coordinates off by 3 px and 68 by 12 px: 68·10·ln 2.5 + 68·(12 − C) = 1977.4741367495028.
    Batch mean (mmpose's reduction): (551.43… + 3796.79… + 1977.47…) / 3 = 2108.5665206422536."""
    target = torch.zeros(3, 68, 2, dtype=torch.float64)
    pred = torch.stack([torch.full((68, 2), 1.0), torch.full((68, 2), 20.0), torch.tensor([[3.0, 12.0]] * 68)]).double()
    expected = (551.4325470271035 + 3796.7928781501546 + 1977.4741367495028) / 3
    assert expected == pytest.approx(2108.5665206422536, rel=1e-15)
    assert _mmpose_wing(pred, target).item() == pytest.approx(expected, rel=1e-12)
    assert wing(pred, target, reduction="sum").item() == pytest.approx(expected, rel=1e-12)
    # pltd's default averages over the 136 coordinates as well: exactly 136× smaller
    assert wing(pred, target).item() == pytest.approx(expected / 136, rel=1e-12)


def test_random_batches_match_mmpose():
    """mmpose's formula on random errors spanning both pieces (|δ| < 10 and ≥ 10)."""
    g = torch.Generator().manual_seed(0)
    pred, target = 15 * torch.randn(8, 68, 2, generator=g), 15 * torch.randn(8, 68, 2, generator=g)
    assert wing(pred, target, reduction="sum").item() == pytest.approx(_mmpose_wing(pred, target).item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        wing(pred, target, reduction="batchmean")
