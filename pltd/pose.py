"""The one pose convention of pltd: 300W-LP's (numpy and torch).

300W-LP and AFLW2000-3D were rendered with face3d's code (YadiraF/face3d, `face3d/mesh/transform.py`,
commit 2fc26906d159a11398cd3e7a9b3f16b6f8937da3):

- `angle2matrix_3ddfa([pitch, yaw, roll])` returns R = Rx'·Ry'·Rz', where each primed matrix is the
  transpose of the standard right-handed elementary rotation; so R = (Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ;
- `similarity_transform(V, s, R, t)` = s·V·Rᵀ + t, i.e. every model point X becomes s·R·X + t;
- the image row is h − 1 − y (y flipped; 300W-LP's `Pose_Para` t already includes it).

Model frame (the Basel Face Model's): x to the image's right for a frontal face, y up, z toward the
camera. A point therefore lands at u = t_x + s·(R X)_x, v = t_y − s·(R X)_y in pixels (y down).

Angles are (yaw, pitch, roll) in degrees. With R as above:
- yaw > 0: the nose tip moves to the image's LEFT (in 300W-LP yaw < 0 whenever the nose tip is right
  of the jaw's midpoint; the conformance fixture IBUG_image_008_1_0 has yaw −44°);
- pitch > 0: the nose tip moves UP the image (the face looks up);
- roll > 0: the top of the head moves to the image's right (clockwise on screen).
A horizontal mirror of the image maps (yaw, pitch, roll) → (−yaw, pitch, −roll).

Tested against the real 300W-LP fixture and against face3d's formula in `tests/conformance/`.
"""

from __future__ import annotations

import math

import numpy as np


def _rotation_class():
    # scipy.spatial takes ~0.9 s to import: imported on first use, not when the manifest's
    # settings models are (`pltd build bad.yaml` reports the typo before any heavy import)
    from scipy.spatial.transform import Rotation

    return Rotation


def rotation(yaw, pitch, roll) -> np.ndarray:
    """3×3 (or (..., 3, 3) for array inputs) rotation for angles in degrees: (Rz·Ry·Rx)ᵀ."""
    angles = np.stack(np.broadcast_arrays(roll, yaw, pitch), axis=-1).astype(float)
    r = _rotation_class().from_euler("ZYX", angles.reshape(-1, 3), degrees=True).as_matrix()  # Rz·Ry·Rx
    return np.swapaxes(r, -1, -2).reshape(angles.shape[:-1] + (3, 3))


def angles(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of one rotation matrix; the inverse of `rotation`."""
    # R = Rx'(p)·Ry'(y)·Rz'(r): R[0,2] = −sin y, R[1,2] = sin p·cos y, R[2,2] = cos p·cos y,
    # R[0,1] = cos y·sin r, R[0,0] = cos y·cos r (the same read-out as `angles_torch`)
    r = np.asarray(r, float)
    yaw = np.arcsin(np.clip(-r[0, 2], -1.0, 1.0))
    pitch, roll = np.arctan2(r[1, 2], r[2, 2]), np.arctan2(r[0, 1], r[0, 0])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def angles_batch(r: np.ndarray) -> np.ndarray:
    """(N, 3) yaw, pitch, roll in degrees of (N, 3, 3) rotations."""
    e = _rotation_class().from_matrix(np.swapaxes(np.asarray(r, float), -1, -2)).as_euler("ZYX", degrees=True)
    return e[:, [1, 2, 0]]


def project(points3d: np.ndarray, r: np.ndarray, scale: float, t) -> np.ndarray:
    """Weak-perspective (scaled orthographic) projection of model points to pixels, y down."""
    p = np.asarray(points3d, float) @ np.asarray(r, float).T
    return np.stack([t[0] + scale * p[:, 0], t[1] - scale * p[:, 1]], axis=1)


def mirror(pose: np.ndarray) -> np.ndarray:
    """The pose of the horizontally mirrored image: (yaw, pitch, roll) → (−yaw, pitch, −roll)."""
    return np.asarray(pose, float) * np.array([-1.0, 1.0, -1.0])


def mean_pose(poses: np.ndarray) -> tuple[float, float, float]:
    """Mean of (yaw, pitch, roll) rows as the chordal L2 mean of their rotations, not of the angles."""
    p = np.asarray(poses, float)
    mean = _rotation_class().from_matrix(np.swapaxes(rotation(p[:, 0], p[:, 1], p[:, 2]), -1, -2)).mean()
    return angles(mean.as_matrix().T)


def geodesic_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    """The angle in degrees of the rotation taking r1 to r2."""
    c = (np.trace(np.asarray(r1, float).T @ np.asarray(r2, float)) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def rotation_torch(pose):
    """(B, 3) yaw, pitch, roll in degrees (a torch tensor) → (B, 3, 3) rotations, differentiable.

    The same matrices as `rotation` (tests/conformance checks both against face3d's formula).
    """
    import torch  # the ground package stays importable without torch for the numpy half

    y, p, r = (pose * (math.pi / 180.0)).unbind(dim=-1)
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    # face3d's transposed elementary matrices, multiplied in its order Rx'·Ry'·Rz'
    rx = torch.stack([one, zero, zero, zero, p.cos(), p.sin(), zero, -p.sin(), p.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, -y.sin(), zero, one, zero, y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), r.sin(), zero, -r.sin(), r.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rx @ ry @ rz


def angles_torch(r):
    """(B, 3, 3) rotations → (B, 3) yaw, pitch, roll in degrees; inverse of `rotation_torch` for |yaw| < 90°."""
    import torch

    # R = Rx'(p)·Ry'(y)·Rz'(r): R[0,2] = −sin y, R[1,2] = sin p·cos y, R[2,2] = cos p·cos y,
    # R[0,1] = cos y·sin r, R[0,0] = cos y·cos r
    yaw = torch.asin((-r[:, 0, 2]).clamp(-1.0, 1.0))
    pitch = torch.atan2(r[:, 1, 2], r[:, 2, 2])
    roll = torch.atan2(r[:, 0, 1], r[:, 0, 0])
    return torch.stack([yaw, pitch, roll], dim=1) * (180.0 / math.pi)
