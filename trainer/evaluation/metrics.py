"""The metrics themselves, vectorised (no Python loop per pair).

- `ten_fold_accuracy`: insightface's `eval/verification.py` protocol — Euclidean distance between
  normalised embeddings, thresholds 0, 0.01, …, 4, ten consecutive folds; each fold's accuracy at
  the threshold best on the other nine; mean and std over folds.
- `tar_at_far`: TAR at each FAR from the ROC of template-pair scores, as insightface's IJB-C
  script reads it (the ROC point whose FPR is nearest the FAR).
- `pose_mae`, `nme`, `yaw_binned_nme`: AFLW2000-3D / BIWI (3DDFA protocol, NME by sqrt(w·h) of
  the ground-truth 68-point box), with the |angle| ≤ 99° filter counted.
"""

from __future__ import annotations

import numpy as np


def ten_fold_accuracy(dist: np.ndarray, issame: np.ndarray, folds: int = 10) -> tuple[float, float, float]:
    """(mean accuracy, std, mean best threshold) over folds; dist: Euclidean distances of pairs."""
    thresholds = np.arange(0, 4, 0.01)
    pred = dist[None, :] < thresholds[:, None]  # (T, N): same-person predictions at every threshold
    correct = pred == issame[None, :]
    idx = np.arange(len(dist))
    accs, best = [], []
    for test in np.array_split(idx, folds):
        train = np.setdiff1d(idx, test)
        t = int(np.argmax(correct[:, train].mean(axis=1)))
        best.append(thresholds[t])
        accs.append(correct[t, test].mean())
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(best))


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, descending (as sklearn's roc_curve)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.int64)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max(len(y) - y.sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def tar_at_far(scores: np.ndarray, labels: np.ndarray, fars=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)) -> dict[str, float]:
    fpr, tpr, _ = roc(scores, labels)
    return {f"{far:g}": float(tpr[int(np.argmin(np.abs(fpr - far)))]) for far in fars}


def pose_mae(pred: np.ndarray, truth: np.ndarray, limit: float | None = 99.0) -> dict:
    """MAE per axis and mean (degrees; yaw wrapped), over samples whose |angles| ≤ limit (counted)."""
    pred, truth = np.asarray(pred, float), np.asarray(truth, float)
    keep = np.all(np.abs(truth) <= limit, axis=1) if limit is not None else np.ones(len(truth), bool)
    err = np.abs((pred[keep] - truth[keep] + 180.0) % 360.0 - 180.0)
    out = {"n": int(keep.sum()), "excluded": int((~keep).sum())}
    if keep.any():
        out |= {"yaw": float(err[:, 0].mean()), "pitch": float(err[:, 1].mean()), "roll": float(err[:, 2].mean())}
        out["mean"] = (out["yaw"] + out["pitch"] + out["roll"]) / 3
    return out


def nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-sample NME: mean point distance / sqrt(w·h) of the ground-truth box. (N, 68, 2) inputs."""
    pred, truth = np.asarray(pred, float).reshape(-1, 68, 2), np.asarray(truth, float).reshape(-1, 68, 2)
    wh = truth.max(axis=1) - truth.min(axis=1)
    return np.linalg.norm(pred - truth, axis=2).mean(axis=1) / np.sqrt(wh[:, 0] * wh[:, 1])


def yaw_binned_nme(pred: np.ndarray, truth: np.ndarray, yaw: np.ndarray) -> dict:
    """NME (%) for |yaw| in [0, 30), [30, 60), [60, 90] and their mean (3DDFA protocol)."""
    e = nme(pred, truth) * 100
    a = np.abs(np.asarray(yaw, float))
    bins = {"0-30": a < 30, "30-60": (a >= 30) & (a < 60), "60-90": (a >= 60) & (a <= 90)}
    out = {k: {"nme": float(e[m].mean()) if m.any() else None, "n": int(m.sum())} for k, m in bins.items()}
    vals = [v["nme"] for v in out.values() if v["nme"] is not None]
    out["mean"] = float(np.mean(vals)) if vals else None
    out["all"] = float(e.mean()) if len(e) else None
    return out


def ced(errors: np.ndarray, upto: float = 0.1, steps: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: fraction of samples with error ≤ x for x in [0, upto]."""
    x = np.linspace(0, upto, steps)
    e = np.sort(np.asarray(errors, float))
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)
