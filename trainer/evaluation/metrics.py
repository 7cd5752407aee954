"""The metrics themselves, vectorised, each equal to the reference implementation it names.

- `ten_fold_accuracy`: insightface `recognition/arcface_torch/eval/verification.py` (`calculate_roc`):
  the **squared** Euclidean distance of L2-normalised embeddings, thresholds
  `np.arange(0, 4, 0.01)` (same if d² < t), ten consecutive folds (sklearn `KFold`, no shuffle);
  each fold's accuracy at the first threshold best on the other nine; mean and std over folds.
- `tar_at_far`: insightface `recognition/arcface_torch/eval_ijbc.py`: sklearn `roc_curve` (its
  default `drop_intermediate=True`), then the ROC point whose FPR is nearest each FAR; among equally
  near points the highest TPR (the script flips the curve and takes the first minimum).
- `pose_mae`, `nme`, `yaw_binned_nme`: AFLW2000-3D / BIWI. NME by sqrt(w·h) of the ground-truth
  68-point box and the |yaw| bins [0, 30], (30, 60], > 60 with the mean of the three bin means, as
  3DDFA's `benchmark_aflw2000.py` (`calc_nme`, `ana`); the |angle| ≤ 99° pose filter is counted.
  `nme(..., points=INNER51)`: the 51 inner points (17–67) with the same normaliser; `pose_bias`: the
  mean signed error on the same faces as `pose_mae`.
- `spearman`, `keep_most_confident`: how well a per-sample confidence ranks the true error (the
  label report's "keep the X % most confident → NME" table).
- `failure_rate_auc`, `ced`: failure rate and AUC of the cumulative error distribution up to a
  threshold, as PIPNet's `compute_fr_and_auc` (the definition the 300W/WFLW literature reports).
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import simpson
from sklearn.metrics import roc_curve

VERIFICATION_THRESHOLDS = np.arange(0, 4, 0.01)  # insightface's grid, in squared-distance units


def squared_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """insightface's `dist = np.sum(np.square(embeddings1 - embeddings2), 1)`."""
    return np.sum(np.square(np.asarray(emb1, float) - np.asarray(emb2, float)), axis=1)


def ten_fold_accuracy(sq_dist: np.ndarray, issame: np.ndarray, folds: int = 10) -> tuple[float, float, float]:
    """(mean accuracy, std, mean best threshold) over folds; sq_dist: SQUARED Euclidean distances.

    The threshold is in insightface's units (squared distance of unit vectors, 0–4; the cosine
    threshold is 1 − t/2). Folds are consecutive, as `KFold(n_splits=folds, shuffle=False)`:
    np.array_split makes the same split (the first n mod k folds one pair longer)."""
    sq_dist, issame = np.asarray(sq_dist, float), np.asarray(issame, bool)
    pred = sq_dist[None, :] < VERIFICATION_THRESHOLDS[:, None]  # (T, N): same-person at every threshold
    correct = pred == issame[None, :]
    idx = np.arange(len(sq_dist))
    accs, best = [], []
    for test in np.array_split(idx, folds):
        train = np.setdiff1d(idx, test)
        t = int(np.argmax(correct[:, train].mean(axis=1)))  # first maximum, as np.argmax in the reference
        best.append(VERIFICATION_THRESHOLDS[t])
        accs.append(correct[t, test].mean())
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(best))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, fars=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)) -> dict[str, float]:
    """TPR at the ROC point nearest each FAR; ties → the last (highest-TPR) point, as insightface."""
    fpr, tpr, _ = roc_curve(np.asarray(labels).astype(int), np.asarray(scores, float))
    out = {}
    for far in fars:
        d = np.abs(fpr - far)
        out[f"{far:g}"] = float(tpr[np.flatnonzero(d == d.min())[-1]])
    return out


def pose_mae(pred: np.ndarray, truth: np.ndarray, limit: float | None = 99.0) -> dict:
    """MAE per axis and mean (degrees; yaw wrapped), over samples whose |angles| ≤ limit (counted)."""
    err, keep = pose_errors(pred, truth, limit)
    err = np.abs(err)
    out = {"n": int(keep.sum()), "excluded": int((~keep).sum())}
    if keep.any():
        out |= {"yaw": float(err[:, 0].mean()), "pitch": float(err[:, 1].mean()), "roll": float(err[:, 2].mean())}
        out["mean"] = (out["yaw"] + out["pitch"] + out["roll"]) / 3
    return out


INNER51 = np.arange(17, 68)  # brows, nose, eyes, mouth: the points that mean the same in 2D- and 3D-style labels


def nme(pred: np.ndarray, truth: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
    """Per-sample NME: mean point distance / sqrt(w·h) of the ground-truth 68-point box. (N, 68, 2)
    inputs; `points` (indices, e.g. `INNER51`) averages over those points only, with the same
    normaliser (the box of all 68 ground-truth points), so NME68 and inner-51 share a scale."""
    pred, truth = np.asarray(pred, float).reshape(-1, 68, 2), np.asarray(truth, float).reshape(-1, 68, 2)
    wh = truth.max(axis=1) - truth.min(axis=1)
    dist = np.linalg.norm(pred - truth, axis=2)
    if points is not None:
        dist = dist[:, points]
    return dist.mean(axis=1) / np.sqrt(wh[:, 0] * wh[:, 1])


def yaw_bins(yaw: np.ndarray) -> dict[str, np.ndarray]:
    """3DDFA's |yaw| bins: [0, 30], (30, 60], > 60 (every face beyond 60°, also beyond 90°). The keys
    keep the labels 3DDFA prints ("[60, 90]" for the third bin)."""
    a = np.abs(np.asarray(yaw, float))
    return {"0-30": a <= 30, "30-60": (a > 30) & (a <= 60), "60-90": a > 60}


def binned(errors: np.ndarray, yaw: np.ndarray) -> dict:
    """Per-face errors (already in %) per 3DDFA |yaw| bin; `mean` = mean of the bin means (3DDFA's
    headline figure, over the bins that have faces), `all` = mean over faces."""
    e = np.asarray(errors, float)
    out = {k: {"nme": float(e[m].mean()) if m.any() else None, "n": int(m.sum())} for k, m in yaw_bins(yaw).items()}
    vals = [v["nme"] for v in out.values() if v["nme"] is not None]
    out["mean"] = float(np.mean(vals)) if vals else None
    out["all"] = float(e.mean()) if len(e) else None
    return out


def yaw_binned_nme(pred: np.ndarray, truth: np.ndarray, yaw: np.ndarray, points: np.ndarray | None = None) -> dict:
    """NME (%) per 3DDFA |yaw| bin, `mean` = mean of the three bin means (3DDFA's headline figure),
    `all` = mean over faces; `points` as in `nme`."""
    return binned(nme(pred, truth, points) * 100, yaw)


def pose_errors(pred: np.ndarray, truth: np.ndarray, limit: float | None = 99.0) -> tuple[np.ndarray, np.ndarray]:
    """Signed errors pred − truth (degrees, wrapped to [−180, 180)) of the samples whose |angles| ≤
    limit, and the mask of those samples."""
    pred, truth = np.asarray(pred, float).reshape(-1, 3), np.asarray(truth, float).reshape(-1, 3)
    keep = np.all(np.abs(truth) <= limit, axis=1) if limit is not None else np.ones(len(truth), bool)
    return (pred[keep] - truth[keep] + 180.0) % 360.0 - 180.0, keep


def pose_bias(pred: np.ndarray, truth: np.ndarray, limit: float | None = 99.0) -> dict:
    """Mean signed error per axis (degrees; + = the prediction is larger), over the same samples as
    `pose_mae`: a systematic offset that the MAE hides."""
    err, keep = pose_errors(pred, truth, limit)
    out = {"n": int(keep.sum())}
    if keep.any():
        out |= {"yaw": float(err[:, 0].mean()), "pitch": float(err[:, 1].mean()), "roll": float(err[:, 2].mean())}
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (ties share their mean rank); None under 3 pairs or a constant side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def keep_most_confident(expected_error: np.ndarray, errors: dict[str, np.ndarray], percents=(50, 70, 90, 100)) -> list:
    """For each X in `percents`: keep the ceil(X % · n) samples of lowest `expected_error` (the most
    confident; NaN counts as least confident, ties by order) and report the mean of each error array
    over them, with the largest expected error kept (the threshold a user would set)."""
    conf = np.asarray(expected_error, float)
    order = np.argsort(np.where(np.isnan(conf), np.inf, conf), kind="stable")
    out = []
    for pct in percents:
        k = int(np.ceil(len(conf) * pct / 100 - 1e-9))
        kept = order[:k]
        row = {
            "percent": pct,
            "n": k,
            "threshold": float(np.nanmax(conf[kept])) if k and not np.isnan(conf[kept]).all() else None,
        }
        row |= {name: float(np.asarray(e, float)[kept].mean()) if k else None for name, e in errors.items()}
        out.append(row)
    return out


def ced(errors: np.ndarray, upto: float = 0.1, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: fraction of samples with error ≤ x for x = 0, step, …, upto."""
    x = np.arange(0, upto + step, step)
    e = np.sort(np.asarray(errors, float))
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)


def failure_rate_auc(errors: np.ndarray, threshold: float, step: float = 1e-4) -> tuple[float, float]:
    """(failure rate, AUC) at `threshold`, as PIPNet's `compute_fr_and_auc`.

    Failure rate = 1 − CED(threshold), the share of faces whose NME exceeds it. AUC = the area under
    the CED on [0, threshold] by Simpson's rule on the grid 0, step, …, threshold, divided by the
    threshold: normalised to [0, 1], 1 for a method with zero error on every face."""
    x, y = ced(errors, threshold, step)
    return float(1.0 - y[-1]), float(simpson(y, x=x) / threshold)
