"""Pose geometry: the Euler convention, weak-perspective pose fitting, rotation averaging, NME.

Convention (face3d/3DDFA, which produced 300W-LP): model coordinates x to the image's right for a
frontal face, y up, z toward the camera; R = Rz(roll) · Ry(yaw) · Rx(pitch); a point projects to
pixels as u = s·(R X)_x + t_x, v = t_y − s·(R X)_y. Hence pitch > 0 looks down (the nose tip moves
down the image), yaw > 0 turns the nose toward the image's right (the subject's left), roll > 0
turns the face counter-clockwise on screen (the top of the head moves to the image's left).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation for angles in degrees: Rz(roll) · Ry(yaw) · Rx(pitch)."""
    return Rotation.from_euler("ZYX", [roll, yaw, pitch], degrees=True).as_matrix()


def angles(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix (inverse of `rotation`)."""
    roll, yaw, pitch = Rotation.from_matrix(r).as_euler("ZYX", degrees=True)
    return float(yaw), float(pitch), float(roll)


def project(points3d: np.ndarray, r: np.ndarray, scale: float, t: np.ndarray) -> np.ndarray:
    """Weak-perspective projection to pixels (y down)."""
    p = points3d @ r.T
    return np.stack([t[0] + scale * p[:, 0], t[1] - scale * p[:, 1]], axis=1)


def fit_pose(points2d: np.ndarray, model3d: np.ndarray) -> tuple[tuple[float, float, float], float, np.ndarray, float]:
    """Fit scale, rotation and translation of `model3d` to `points2d` (pixels).

    Linear affine-camera solution, projected to the nearest rotation, then refined by nonlinear
    least squares. Returns ((yaw, pitch, roll), scale, translation, RMS residual in pixels).
    """
    x = np.asarray(points2d, float)
    m = np.asarray(model3d, float)
    mc = m - m.mean(axis=0)
    xc = x - x.mean(axis=0)
    xc[:, 1] *= -1  # to y-up
    a, *_ = np.linalg.lstsq(mc, xc, rcond=None)  # 3x2: xc ≈ mc @ a
    r12 = a.T
    s0 = (np.linalg.norm(r12[0]) + np.linalg.norm(r12[1])) / 2
    r3 = np.cross(r12[0], r12[1])
    u, _, vt = np.linalg.svd(np.vstack([r12 / s0, r3 / max(np.linalg.norm(r3), 1e-12)]))
    r0 = u @ vt
    if np.linalg.det(r0) < 0:
        r0 = u @ np.diag([1, 1, -1]) @ vt

    def residual(p: np.ndarray) -> np.ndarray:
        r = Rotation.from_rotvec(p[:3]).as_matrix()
        return (project(m, r, p[3], p[4:6]) - x).ravel()

    t0 = x.mean(axis=0) - project(m.mean(axis=0, keepdims=True), r0, s0, np.zeros(2))[0]
    sol = least_squares(residual, np.concatenate([Rotation.from_matrix(r0).as_rotvec(), [s0], t0]), method="lm")
    r = Rotation.from_rotvec(sol.x[:3]).as_matrix()
    rms = float(np.sqrt(np.mean(sol.fun**2) * 2))
    return angles(r), float(sol.x[3]), sol.x[4:6], rms


def mean_pose(poses: np.ndarray) -> tuple[float, float, float]:
    """Mean of (yaw, pitch, roll) rows as the chordal L2 mean of rotations, not of the angles."""
    rots = Rotation.from_euler("ZYX", np.asarray(poses, float)[:, [2, 0, 1]], degrees=True)
    roll, yaw, pitch = rots.mean().as_euler("ZYX", degrees=True)
    return float(yaw), float(pitch), float(roll)


def face_size(landmarks: np.ndarray) -> float:
    """sqrt(w·h) of the 68-point box: the 3DDFA / AFLW2000-3D NME normaliser."""
    pts = np.asarray(landmarks, float).reshape(-1, 2)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    return float(np.sqrt(max(w, 1e-6) * max(h, 1e-6)))


def nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point-to-point distance divided by the ground truth's face size."""
    p, t = np.asarray(pred, float).reshape(-1, 2), np.asarray(truth, float).reshape(-1, 2)
    return float(np.linalg.norm(p - t, axis=1).mean() / face_size(t))
