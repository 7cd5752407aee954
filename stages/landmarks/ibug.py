"""The iBUG 300-W 68-point layout: the mirror permutation used by horizontal flips."""

from __future__ import annotations

import numpy as np

# Point k of a mirrored face is point MIRROR68[k] of the original (0-based): jaw 0–16, brows
# 17–26, nose bridge 27–30 (self), nostrils 31–35, eyes 36–47, outer lips 48–59, inner lips 60–67.
MIRROR68 = np.array(
    [
        *[16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        *[26, 25, 24, 23, 22, 21, 20, 19, 18, 17],
        *[27, 28, 29, 30, 35, 34, 33, 32, 31],
        *[45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40],
        *[54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55],
        *[64, 63, 62, 61, 60, 67, 66, 65],
    ]
)


def mirror_landmarks(points: np.ndarray, width: float) -> np.ndarray:
    """68 points of the horizontally flipped image (x → width − x, then the permutation)."""
    p = np.asarray(points, float).reshape(68, 2).copy()
    p[:, 0] = width - p[:, 0]
    return p[MIRROR68]
