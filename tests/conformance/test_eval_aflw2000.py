"""Conformance: AFLW2000-3D NME, yaw bins, failure rate, AUC and CED against the reference code.

- NME and bins: cleardusk/3DDFA, `benchmark_aflw2000.py`, commit
  09d138b7d8edf8ae04032d04627a013e5a098529 (`calc_nme`: mean point distance / sqrt(w·h) of the
  ground-truth box, float32 list; `ana`: |yaw| ≤ 30, (30, 60], > 60, headline = mean of the three
  bin means). `_3ddfa_calc_nme` / `_3ddfa_ana` follow it line by line.
- Failure rate and AUC: jhb86253817/PIPNet, `lib/functions.py`, commit
  0acbaf6615ba153f4c9d219966913e30dcffac6a (`compute_fr_and_auc`), transcribed in `_pipnet_fr_auc`
  (`simps` is scipy's Simpson rule, `simpson` in current scipy), and checked by hand.
"""

from __future__ import annotations

from math import sqrt

import numpy as np
import pytest
from scipy.integrate import simpson

from pltd.trainer.evaluation.metrics import failure_rate_auc, nme, yaw_binned_nme
from pltd.trainer.evaluation.protocols import nme_summary


def _3ddfa_calc_nme(pts68_fit_all, pts68_all):
    nme_list = []
    for i in range(len(pts68_all)):
        pts68_fit, pts68_gt = pts68_fit_all[i], pts68_all[i]
        minx, maxx = np.min(pts68_gt[0, :]), np.max(pts68_gt[0, :])
        miny, maxy = np.min(pts68_gt[1, :]), np.max(pts68_gt[1, :])
        llength = sqrt((maxx - minx) * (maxy - miny))
        dis = pts68_fit - pts68_gt[:2, :]
        dis = np.sqrt(np.sum(np.power(dis, 2), 0))
        nme_list.append(np.mean(dis) / llength)
    return np.array(nme_list, dtype=np.float32)


def _3ddfa_ana(nme_list, yaws_list):
    yaw_list_abs = np.abs(yaws_list)
    ind_yaw_1 = yaw_list_abs <= 30
    ind_yaw_2 = np.bitwise_and(yaw_list_abs > 30, yaw_list_abs <= 60)
    ind_yaw_3 = yaw_list_abs > 60
    mean_all = [np.mean(nme_list[ind]) * 100 for ind in (ind_yaw_1, ind_yaw_2, ind_yaw_3)]
    return (*mean_all, np.mean(mean_all))


def _pipnet_fr_auc(nmes, thres=0.1, step=0.0001):
    num_data = len(nmes)
    xs = np.arange(0, thres + step, step)
    ys = np.array([np.count_nonzero(nmes <= x) for x in xs]) / float(num_data)
    fr = 1.0 - ys[-1]
    auc = simpson(ys, x=xs) / thres
    return fr, auc


def aflw_like(n=2000, seed=0):
    """Synthetic AFLW2000-3D-like set: 68-point faces, |yaw| up to 120° (7 beyond 90° as the real
    set), errors growing with yaw; boundary yaws 30 and 60 exactly included."""
    rng = np.random.default_rng(seed)
    sign = lambda k: rng.choice([-1, 1], k)  # noqa: E731
    yaw = np.r_[rng.uniform(-60, 60, n - 313), sign(298) * rng.uniform(60.01, 89.9, 298),
                sign(7) * rng.uniform(90.5, 120, 7), [30.0] * 4, [-60.0] * 4]  # fmt: skip
    gt = rng.uniform(0, 200, (n, 68, 2)) + rng.uniform(0, 300, (n, 1, 2))
    err = (0.02 + 0.0006 * np.abs(yaw))[:, None, None] * 150 * rng.standard_normal((n, 68, 2))
    err[np.abs(yaw) > 90] *= 4  # the profile faces beyond 90° are the hardest
    return gt + err, gt, yaw


def test_nme_and_bins_equal_3ddfa():
    """Conformance: per-face NME, the three bins, and the mean of bins equal 3DDFA's on a set with
    faces beyond 90° (kept in the third bin) and on the 30/60 boundaries."""
    pred, gt, yaw = aflw_like()
    ref_nme = _3ddfa_calc_nme(pred.transpose(0, 2, 1), gt.transpose(0, 2, 1))
    assert np.allclose(nme(pred, gt), ref_nme, rtol=1e-6)  # 3DDFA stores float32
    b1, b2, b3, mean = _3ddfa_ana(ref_nme, yaw)
    r = yaw_binned_nme(pred, gt, yaw)
    assert [r["0-30"]["nme"], r["30-60"]["nme"], r["60-90"]["nme"], r["mean"]] == pytest.approx(
        [b1, b2, b3, mean], rel=1e-5
    )
    assert r["60-90"]["n"] == int((np.abs(yaw) > 60).sum()) and r["30-60"]["n"] == int(
        ((np.abs(yaw) > 30) & (np.abs(yaw) <= 60)).sum()
    )
    assert r["0-30"]["n"] + r["30-60"]["n"] + r["60-90"]["n"] == len(yaw)


def test_bins_by_hand():
    """Conformance (3DDFA's boundaries by hand): yaw 30 → first bin, 60 → second, 95 → third."""
    truth = np.zeros((4, 68, 2))
    truth[:, :, 0] = np.linspace(0, 40, 68)
    truth[:, :, 1] = np.linspace(0, 10, 68)  # box 40 × 10: normaliser 20
    pred = truth + [[[1.0, 0]], [[2.0, 0]], [[0, 4.0]], [[0, 8.0]]]  # NME 5, 10, 20, 40 %
    r = yaw_binned_nme(pred, truth, np.array([30.0, -60.0, 80.0, -95.0]))
    assert (r["0-30"]["nme"], r["30-60"]["nme"], r["60-90"]["nme"]) == pytest.approx((5.0, 10.0, 30.0))
    assert r["mean"] == pytest.approx(15.0) and r["all"] == pytest.approx(18.75)


def test_failure_rate_and_auc_by_hand():
    """Conformance (hand computation of PIPNet's definitions): NMEs 0.02, 0.05, 0.09, 0.12.
    Failure rate at 0.08: 2 of 4 exceed it → 0.5; at 0.10: 1 of 4 → 0.25. The CED on [0, 0.1] is a
    step function rising by 1/4 at 0.02, 0.05, 0.09: area 0.25·(0.08 + 0.05 + 0.01) = 0.035, AUC =
    0.035 / 0.1 = 0.35 (Simpson on the 1e-4 grid is within 1e-3 of the exact step area)."""
    e = np.array([0.02, 0.05, 0.09, 0.12])
    fr8, _ = failure_rate_auc(e, 0.08)
    fr10, auc10 = failure_rate_auc(e, 0.10)
    assert (fr8, fr10) == pytest.approx((0.5, 0.25)) and auc10 == pytest.approx(0.35, abs=1e-3)
    s = nme_summary(e)
    assert s["failure_rate"] == pytest.approx({"0.08": 0.5, "0.1": 0.25}) and s["auc"]["0.1"] == auc10


def test_failure_rate_and_auc_equal_pipnet():
    """Conformance: on the synthetic AFLW2000-like NMEs, failure rate and AUC equal PIPNet's code."""
    pred, gt, _ = aflw_like(seed=1)
    e = nme(pred, gt)
    for t in (0.08, 0.10):
        assert failure_rate_auc(e, t) == pytest.approx(_pipnet_fr_auc(e, t), abs=1e-12)
