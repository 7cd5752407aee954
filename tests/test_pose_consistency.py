"""The numpy and torch halves of `pltd/pose.py` agree: one convention, two implementations.

Consistency test (pltd vs pltd). The outside truth for the convention itself (face3d's
`angle2matrix_3ddfa`, a real 300W-LP file) is in `tests/conformance/test_pose_convention.py`.
"""

from __future__ import annotations

import numpy as np
import torch

from pltd.pose import angles_batch, angles_torch, mirror, rotation, rotation_torch


def poses(n: int = 500, seed: int = 0) -> np.ndarray:
    """yaw, pitch, roll in degrees over the range faces take (|yaw| < 90 keeps the inverse unique)."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-89, 89, n), rng.uniform(-80, 80, n), rng.uniform(-170, 170, n)])


def test_rotation_numpy_and_torch_give_the_same_matrices():
    p = poses()
    r_np = rotation(p[:, 0], p[:, 1], p[:, 2])
    r_t = rotation_torch(torch.tensor(p, dtype=torch.float64)).numpy()
    assert r_np.shape == r_t.shape == (len(p), 3, 3)
    np.testing.assert_allclose(r_t, r_np, atol=1e-12)
    np.testing.assert_allclose(r_np @ np.swapaxes(r_np, 1, 2), np.broadcast_to(np.eye(3), r_np.shape), atol=1e-12)


def test_angles_numpy_and_torch_invert_the_same_matrices():
    p = poses(seed=1)
    r = rotation(p[:, 0], p[:, 1], p[:, 2])
    back_np = angles_batch(r)
    back_t = angles_torch(torch.tensor(r)).numpy()
    np.testing.assert_allclose(back_np, p, atol=1e-9)
    np.testing.assert_allclose(back_t, p, atol=1e-6)  # asin near ±90° yaw loses a few digits


def test_float32_torch_rotation_stays_within_training_precision():
    p = poses(seed=2)
    r32 = rotation_torch(torch.tensor(p, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(r32, rotation(p[:, 0], p[:, 1], p[:, 2]), atol=2e-6)


def test_mirror_matches_the_mirrored_rotation():
    """Mirroring the image (x → −x) conjugates R by diag(−1, 1, 1); `mirror` must give those angles."""
    p = poses(n=50, seed=3)
    flip = np.diag([-1.0, 1.0, 1.0])
    for yaw, pitch, roll in p:
        mirrored = flip @ rotation(yaw, pitch, roll) @ flip
        np.testing.assert_allclose(rotation(*mirror([yaw, pitch, roll])), mirrored, atol=1e-12)
