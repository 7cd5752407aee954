"""Per-landmark self-occlusion from a pose and the mean 3D face (after LPONet's occlusion
labels; they train the visibility head and grade the occlusion evaluation): a landmark is hidden
when its surface normal faces away from the camera.

Normals: the mean face's 68 points are triangulated in their frontal (x, y) projection (Delaunay,
scipy) — the face seen from the front is a height field, so each triangle is oriented toward the
camera (+z) — and each point's normal is the area-weighted sum of its triangles' normals (the usual
vertex normal of a mesh). Boundary points (the jaw) only have triangles toward the face's inside,
so their normals lean outward as the surface falls away behind the cheeks.

Visibility: with R = `pltd.pose.rotation(yaw, pitch, roll)` (300W-LP's convention; the camera looks
along −z, model z points toward it) a normal n becomes R·n, and the point is visible when
(R·n)_z > 0. A back-face test only: a point that faces the camera but lies behind the nose is not
marked. yaw > 0 turns the nose to the image's left, i.e. the face's image-left half (iBUG jaw
points 0–7, the subject's right) away from the camera: at yaw +60° those hide, at −60° points 9–16.

`visible_from_normals` is written with `@`, `swapaxes`-free indexing only, so it runs on numpy
arrays and on torch tensors alike (the trainer computes its targets from the batch's pose with it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pltd.pose import rotation


def vertex_normals(points: np.ndarray) -> np.ndarray:
    """(N, 3) points (x right, y up, z toward the camera) → (N, 3) unit normals toward the camera side."""
    from scipy.spatial import Delaunay  # ~1 s to import: on first use, not when a manifest is validated

    p = np.asarray(points, float)
    tri = Delaunay(p[:, :2]).simplices
    face = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])  # length = 2 × area
    face *= np.sign(face[:, 2:3])  # orient every triangle toward +z (a height field from the front)
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, tri[:, k], face)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


@lru_cache(maxsize=4)
def _mean_face_normals(path: str | None) -> np.ndarray:
    from pltd.stages.landmarks.mean_face import load_mean_face

    return vertex_normals(load_mean_face(path))


def mean_face_normals(path: str | None = None) -> np.ndarray:
    """Normals of the shipped (or given) mean 3D face, computed once per path."""
    return _mean_face_normals(None if path is None else str(path)).copy()


def visible_from_normals(r, normals):
    """(B, 3, 3) rotations, (N, 3) normals → (B, N) booleans: (R·n)_z > 0. numpy or torch."""
    return (r @ normals.T)[:, 2, :] > 0


def self_occlusion(pose: np.ndarray, mean_face_path: str | None = None) -> np.ndarray:
    """(B, 3) yaw, pitch, roll in degrees (or one (3,) pose) → (B, 68) visible flags (bool)."""
    p = np.atleast_2d(np.asarray(pose, float))
    vis = visible_from_normals(rotation(p[:, 0], p[:, 1], p[:, 2]), mean_face_normals(mean_face_path))
    return vis if np.ndim(pose) > 1 else vis[0]
