"""Face alignment for recognition networks: 5 points from the 68, similarity warp to a template."""

from __future__ import annotations

import numpy as np
from PIL import Image

# insightface's ArcFace template for 112x112 crops: left eye, right eye, nose tip, mouth corners
# (image left to right).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip, mouth corners from iBUG 68 points (image-left eye first)."""
    p = np.asarray(landmarks68, float).reshape(68, 2)
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping src points onto dst: a 2x3 matrix."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / (s**2).sum(axis=1).mean()
    return np.c_[scale * r, mu_d - scale * r @ mu_s]


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Apply the 2x3 forward matrix `m` (source → output pixels) to an RGB image."""
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2].reshape(-1)
    return np.asarray(Image.fromarray(image).transform((size, size), Image.AFFINE, tuple(inv), Image.BILINEAR))


def arcface_crop(image: np.ndarray, landmarks68: np.ndarray, size: int = 112) -> np.ndarray:
    """The ArcFace-aligned crop (112x112 by default; the template scales with `size`)."""
    return warp(image, similarity(five_points(landmarks68), ARCFACE_112 * size / 112.0), size)
