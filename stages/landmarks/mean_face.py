"""The 68-point mean 3D face used for pose fitting (and, later, λ_P of Eqs. 6–9).

Model coordinates as in `geometry`: x to the image's right for a frontal face, y up, z toward the
camera; centred, inter-ocular distance 1. The shipped `stages/data/mean_face_68.json` records how
it was made. `from_meshes` builds one from MediaPipe 3D meshes (generalised Procrustes mean);
`with_frontal_2d` replaces x, y by the mean of near-frontal ground-truth 2D landmarks (the paper's
recipe: "mean of near-frontal 300W-LP samples"), keeping the depth, which 2D labels cannot give.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # image-left eye (subject's right), image-right eye


def default_mean_face_path() -> Path:
    return Path(str(resources.files("pltd.stages") / "data" / "mean_face_68.json"))


def load_mean_face(path: str | Path | None = None) -> np.ndarray:
    p = Path(path) if path else default_mean_face_path()
    if not p.is_file():
        raise FileNotFoundError(f"mean 3D face {p} not found")
    pts = np.asarray(json.loads(p.read_text())["points"], float)
    if pts.shape != (68, 3):
        raise ValueError(f"{p}: 'points' must be 68 x 3, got {pts.shape}")
    return pts


def save_mean_face(path: str | Path, points: np.ndarray, provenance: dict) -> None:
    doc = {"points": np.round(points, 5).tolist(), "provenance": provenance}
    Path(path).write_text(json.dumps(doc, indent=1))


def canonical(points: np.ndarray) -> np.ndarray:
    """Centre, rotate so the eye line is +x and the face looks along +z, scale inter-ocular distance to 1."""
    p = np.asarray(points, float) - np.mean(points, axis=0)
    x = p[RIGHT_EYE].mean(axis=0) - p[LEFT_EYE].mean(axis=0)
    x /= np.linalg.norm(x)
    up = (p[LEFT_EYE].mean(axis=0) + p[RIGHT_EYE].mean(axis=0)) / 2 - p[48:68].mean(axis=0)  # mouth → eyes
    y = up - x * (up @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    p = p @ np.stack([x, y, z]).T
    if p[30, 2] < p[:, 2].mean():  # the nose tip must point toward the camera
        p[:, 2] *= -1
    return p / np.linalg.norm(p[RIGHT_EYE].mean(axis=0) - p[LEFT_EYE].mean(axis=0))


def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotate and scale src onto dst (both centred), Umeyama without reflection."""
    u, _, vt = np.linalg.svd(dst.T @ src)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1, 1, d]) @ vt
    out = src @ r.T
    return out * (np.sum(dst * out) / np.sum(out * out))


def from_meshes(meshes68: list[np.ndarray]) -> np.ndarray:
    """Generalised Procrustes mean of 68x3 MediaPipe points (x right, y down, z away, in pixels)."""
    shapes = []
    for m in meshes68:
        m = np.asarray(m, float) * [1, -1, -1]  # to y up, z toward the camera
        shapes.append(canonical(m))
    mean = np.mean(shapes, axis=0)
    for _ in range(5):
        mean = canonical(np.mean([_align(s - s.mean(0), mean) for s in shapes], axis=0))
    return mean


def with_frontal_2d(model: np.ndarray, landmarks2d: list[np.ndarray]) -> np.ndarray:
    """Mean 3D face whose x, y come from near-frontal 2D ground truth (pixels, y down)."""
    ref = model[:, :2]
    aligned = []
    for pts in landmarks2d:
        p = np.asarray(pts, float).reshape(68, 2) * [1, -1]
        p = p - p.mean(axis=0)
        # 2D similarity alignment onto the current model's x, y
        a = np.linalg.lstsq(np.c_[p, np.ones(68)], ref, rcond=None)[0]
        aligned.append(np.c_[p, np.ones(68)] @ a)
    xy = np.mean(aligned, axis=0)
    out = np.c_[xy, model[:, 2]]
    return canonical(out)
