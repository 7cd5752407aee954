"""Thresholds at a target false-accept rate (conformance: sklearn's roc_curve and the normal
quantile's tabulated value), the paper's rule as an option, the expected false merges."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from pltd.stages.identities.thresholds import (
    MIN_OBSERVED,
    calibrate,
    expected_false_merges,
    far_threshold,
    tail_threshold,
)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    same = rng.random(4000) < 0.5
    sims = np.where(same, rng.normal(0.7, 0.1, 4000), rng.normal(0.2, 0.12, 4000)).clip(-0.99, 0.99)
    return sims, same


@pytest.mark.parametrize("far", [0.1, 0.01, 0.003, 0.0005])
def test_far_threshold_is_sklearn_roc_operating_point(pairs, far):
    """Conformance: sklearn.metrics.roc_curve (scikit-learn 1.9, documented: fpr[i] is the false
    positive rate of score >= thresholds[i]). Our threshold (accept score > t) is the lowest with
    FAR ≤ far: it must reach the largest fpr ≤ far on sklearn's curve, and the largest tpr there."""
    sims, same = pairs
    fpr, tpr, _ = roc_curve(same, sims, drop_intermediate=False)
    ok = fpr <= far
    t = far_threshold(sims, same, far)
    assert ((sims > t) & ~same).sum() / (~same).sum() == pytest.approx(fpr[ok].max())
    assert ((sims > t) & same).sum() / same.sum() == pytest.approx(tpr[ok].max())


def test_far_threshold_by_hand():
    """Hand computation: 10 negatives 0.0..0.9; FAR 0.2 allows the two highest above t, so t = 0.7."""
    neg = np.arange(10) / 10
    sims = np.r_[neg, 0.95]
    same = np.r_[np.zeros(10, bool), True]
    assert far_threshold(sims, same, 0.2) == pytest.approx(0.7)
    assert far_threshold(sims, same, 0.05) == pytest.approx(0.9)  # none allowed: the highest negative


def test_tail_threshold_is_the_fisher_z_normal_quantile():
    """Documented formula: tanh(mean + sd · z_{1−FAR}) of atanh(cosines); z_{0.999} = 3.0902
    (standard normal table)."""
    z = np.array([0.4, 0.6, 0.5, 0.3, 0.7])  # mean 0.5, sample sd 0.158114
    assert tail_threshold(np.tanh(z), 0.001) == pytest.approx(np.tanh(0.5 + 0.1581139 * 3.090232), abs=1e-6)


def test_rules(pairs):
    sims, same = pairs
    n_neg = (~same).sum()
    acc = calibrate(sims, same, "accuracy", 1e-9)
    emp = calibrate(sims, same, "far", 0.01)
    ext = calibrate(sims, same, "far", 1e-9)
    assert 0.01 * n_neg >= MIN_OBSERVED and emp["method"].startswith("empirical")
    assert emp["far_observed"] <= 0.01 and acc["far_observed"] > 0.01  # balanced pairs: a lax threshold
    assert ext["method"].startswith("extrapolated") and ext["threshold"] >= sims[~same].max()
    assert acc["threshold"] < emp["threshold"] < ext["threshold"]
    with pytest.raises(ValueError, match="threshold rule"):
        calibrate(sims, same, "median", 0.1)


def test_expected_false_merges():
    far9 = {"far_target": 1e-9, "far_observed": 0.0, "far_resolution": 0.02}
    far6 = {"far_target": 1e-6, "far_observed": 0.0, "far_resolution": 0.02}
    assert expected_false_merges([far9, far9], 8.7e8, True)["expected_false_merges"] == pytest.approx(0.87)
    assert expected_false_merges([far6, far9], 1000, False)["far"] == 1e-9  # the stricter network bounds it
    acc = {"far_target": None, "far_observed": 0.0, "far_resolution": 0.02}  # nothing observed: 1/N
    assert expected_false_merges([acc, acc], 100, True)["expected_false_merges"] == pytest.approx(2.0)
