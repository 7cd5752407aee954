"""Pose from 68 points (weak-perspective fit of the mean 3D face), NME.

The convention is `pltd.pose` (300W-LP's, face3d's `angle2matrix_3ddfa`): a model point X lands at
u = t_x + s·(R X)_x, v = t_y − s·(R X)_y with R = `pltd.pose.rotation(yaw, pitch, roll)`.

Which points the rigid fit uses: 2D-style landmarks (dlib, MediaPipe through the index map, and
300W-LP's own `pt2d`) put the jaw contour 0–16 on the visible outline, which slides over the face
as the head turns; the mean 3D face's jaw points are fixed vertices. The fit therefore uses the 51
inner points 17–67 (brows, nose, eyes, mouth) by default, `RIGID_POINTS`. Measured on the real
300W-LP render in `../shared/conformance/` (yaw −44°): README "Pose convention".
"""

from __future__ import annotations

import numpy as np

from pltd.pose import angles, angles_batch, project

RIGID_POINTS = np.arange(17, 68)  # all but the jaw contour (see the module docstring)
ALL_POINTS = np.arange(68)
_P = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # model (y up) → image (y down), orthographic


def _exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation vector → matrix."""
    th = float(np.sqrt(w @ w))
    if th < 1e-12:
        return np.eye(3)
    x, y, z = w / th
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * (k @ k)


def _initial(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
    """Affine-camera least squares, projected to the nearest scaled rotation (a closed-form start)."""
    mc, xc = m - m.mean(axis=0), (x - x.mean(axis=0)) * [1, -1]
    a = np.linalg.lstsq(mc, xc, rcond=None)[0].T  # 2x3: rows ≈ s·R[0], s·R[1]
    s0 = (np.linalg.norm(a[0]) + np.linalg.norm(a[1])) / 2
    r3 = np.cross(a[0], a[1])
    u, _, vt = np.linalg.svd(np.vstack([a / s0, r3 / max(np.linalg.norm(r3), 1e-12)]))
    r0 = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return r0, s0


def fit_pose(
    points2d: np.ndarray, model3d: np.ndarray, use: np.ndarray | None = None, iterations: int = 8
) -> tuple[tuple[float, float, float], float, np.ndarray, float]:
    """Fit scale, rotation and translation of `model3d` (68×3) to `points2d` (68×2 pixels, y down).

    A closed-form affine start, then Gauss–Newton with the analytic Jacobian on (rotation update,
    scale, translation): written by hand because it is 6 unknowns and ~20 µs a step, where scipy's
    `least_squares` with a numeric Jacobian cost ~100× more (benchmarks/pose_fit.py).
    `use`: the point indices fitted (default `RIGID_POINTS`). Returns ((yaw, pitch, roll) in
    `pltd.pose`'s convention, scale, translation (2,), RMS residual in pixels over the fitted points).
    """
    idx = RIGID_POINTS if use is None else np.asarray(use)
    x = np.asarray(points2d, float).reshape(-1, 2)[idx]
    m = np.asarray(model3d, float).reshape(-1, 3)[idx]
    r, s = _initial(x, m)
    t = x.mean(axis=0) - s * (_P @ (r @ m.mean(axis=0)))
    n = len(x)
    j = np.zeros((2 * n, 6))
    j[0::2, 4] = j[1::2, 5] = 1.0  # d res / d t
    for _ in range(iterations):
        q = m @ r.T  # rotated points (n, 3)
        res = np.empty(2 * n)
        res[0::2] = s * q[:, 0] + t[0] - x[:, 0]
        res[1::2] = t[1] - s * q[:, 1] - x[:, 1]
        # d res / d ω for R ← exp(ω)·R (q ← q + ω × q), then d res / d s
        j[0::2, 1], j[0::2, 2] = s * q[:, 2], -s * q[:, 1]
        j[1::2, 0], j[1::2, 2] = s * q[:, 2], -s * q[:, 0]
        j[0::2, 3], j[1::2, 3] = q[:, 0], -q[:, 1]
        step = np.linalg.solve(j.T @ j, -(j.T @ res))  # 6×6 normal equations
        r, s, t = _exp(step[:3]) @ r, s + step[3], t + step[4:6]
        if np.abs(step[:3]).max() < 1e-6 and abs(step[3]) < 1e-6 * s:  # 6e-5°: converged
            break
    res = project(m, r, s, t) - x
    rms = float(np.sqrt(np.mean(np.sum(res**2, axis=1))))
    return angles(r), float(s), t, rms


def face_size(landmarks: np.ndarray) -> float:
    """sqrt(w·h) of the 68-point box: the 3DDFA / AFLW2000-3D NME normaliser."""
    pts = np.asarray(landmarks, float).reshape(-1, 2)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    return float(np.sqrt(max(w, 1e-6) * max(h, 1e-6)))


def nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point-to-point distance divided by the ground truth's face size."""
    p, t = np.asarray(pred, float).reshape(-1, 2), np.asarray(truth, float).reshape(-1, 2)
    return float(np.linalg.norm(p - t, axis=1).mean() / face_size(t))


def _exp_batch(w: np.ndarray) -> np.ndarray:
    """Rodrigues for (N, 3) rotation vectors → (N, 3, 3)."""
    th = np.sqrt(np.sum(w * w, axis=1))
    k = np.zeros((len(w), 3, 3))
    x, y, z = (w / np.maximum(th, 1e-12)[:, None]).T
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 0], k[:, 1, 2], k[:, 2, 0], k[:, 2, 1] = -z, y, z, -x, -y, x
    s, c = np.sin(th)[:, None, None], (1 - np.cos(th))[:, None, None]
    return np.eye(3) + s * k + c * (k @ k)


def fit_pose_batch(
    points2d: np.ndarray, model3d: np.ndarray, use: np.ndarray | None = None, iterations: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`fit_pose` for N point sets at once (N, 68, 2), vectorised across them: the same closed-form
    start and Gauss–Newton steps as numpy batch operations (one 6×6 solve per set per step, batched).
    Returns (N, 3) (yaw, pitch, roll), (N,) scales, (N, 2) translations, (N,) RMS residuals."""
    idx = RIGID_POINTS if use is None else np.asarray(use)
    x = np.asarray(points2d, float).reshape(len(points2d), -1, 2)[:, idx]
    m = np.asarray(model3d, float).reshape(-1, 3)[idx]
    n_sets, n = x.shape[:2]
    if n_sets == 0:
        return np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2)), np.zeros(0)
    # closed-form start (as `_initial`): affine least squares through one pseudo-inverse of the model
    mc = m - m.mean(axis=0)
    a = np.einsum("kp,npc->nck", np.linalg.pinv(mc), (x - x.mean(axis=1, keepdims=True)) * [1, -1])  # (N, 2, 3)
    s = (np.linalg.norm(a[:, 0], axis=1) + np.linalg.norm(a[:, 1], axis=1)) / 2
    r3 = np.cross(a[:, 0], a[:, 1])
    u, _, vt = np.linalg.svd(
        np.concatenate([a / s[:, None, None], (r3 / np.linalg.norm(r3, axis=1)[:, None])[:, None]], 1)
    )
    d = np.ones((n_sets, 3))
    d[:, 2] = np.sign(np.linalg.det(u @ vt))
    r = (u * d[:, None, :]) @ vt
    t = x.mean(axis=1) - s[:, None] * (m.mean(axis=0) @ np.swapaxes(r, 1, 2))[:, :2] * [1, -1]
    j = np.zeros((n_sets, n, 2, 6))
    j[:, :, 0, 4] = j[:, :, 1, 5] = 1.0
    for _ in range(iterations):
        q = m @ np.swapaxes(r, 1, 2)  # (N, n, 3) rotated points
        sq = s[:, None] * q.transpose(2, 0, 1)  # (3, N, n)
        res = np.stack([sq[0] + t[:, :1] - x[..., 0], t[:, 1:] - sq[1] - x[..., 1]], axis=-1)  # (N, n, 2)
        j[:, :, 0, 1], j[:, :, 0, 2] = sq[2], -sq[1]
        j[:, :, 1, 0], j[:, :, 1, 2] = sq[2], -sq[0]
        j[:, :, 0, 3], j[:, :, 1, 3] = q[..., 0], -q[..., 1]
        jj = j.reshape(n_sets, 2 * n, 6)
        step = np.linalg.solve(np.swapaxes(jj, 1, 2) @ jj, -np.einsum("npk,np->nk", jj, res.reshape(n_sets, -1)))
        r, s, t = _exp_batch(step[:, :3]) @ r, s + step[:, 3], t + step[:, 4:6]
    q = m @ np.swapaxes(r, 1, 2)
    res = np.stack([s[:, None] * q[..., 0] + t[:, :1], t[:, 1:] - s[:, None] * q[..., 1]], -1) - x
    rms = np.sqrt(np.mean(np.sum(res**2, axis=2), axis=1))
    return angles_batch(r), s, t, rms
