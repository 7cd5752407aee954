"""The 6D rotation head's math.

Conformance: Gram–Schmidt as 6DRepNet builds it (thohemp/6DRepNet, `sixdrepnet/utils.py`
`compute_rotation_matrix_from_ortho6d`, commit 445cf727e302e5785f961206869fc07953420f89:
x = a1/‖a1‖, z = (x × a2)/‖x × a2‖, y = z × x, R = [x | y | z] as columns), the geodesic angle
arccos((tr(R1 R2ᵀ) − 1)/2) (6DRepNet `sixdrepnet/loss.py`, same commit) against hand-known angles and
SciPy's independent `Rotation.magnitude`, and the mirror: a horizontal flip of the image is the
reflection M = diag(−1, 1, 1), so the flipped face's rotation must be M·R·M (conjugation by a
reflection: M·Rx(p)·M = Rx(p), M·Ry(y)·M = Ry(−y), M·Rz(r)·M = Rz(−r)). Consistency: the mirrored
angles of `pltd.pose.mirror` (what the reader does) give exactly that rotation, so the 6D target
of a flipped sample is right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pltd.networks.heads import rotation_from_6d, rotation_to_6d
from pltd.pose import angles_torch, mirror, project, rotation, rotation_torch
from pltd.trainer.losses.rotation import geodesic_deg, geodesic_loss

S = 1 / math.sqrt(2)


def test_gram_schmidt_gives_rotations():
    x = torch.randn(1000, 6, generator=torch.Generator().manual_seed(0)) * 3
    r = rotation_from_6d(x)
    eye = torch.eye(3).expand(1000, 3, 3)
    assert torch.allclose(r.transpose(1, 2) @ r, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(1000), atol=1e-5)
    # the first column is a1's direction and the second lies in the plane of a1 and a2 (Gram–Schmidt)
    assert torch.allclose(r[:, :, 0], x[:, :3] / x[:, :3].norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(
        (torch.linalg.cross(x[:, :3], x[:, 3:], dim=1) * r[:, :, 1]).sum(1), torch.zeros(1000), atol=1e-4
    )


@pytest.mark.parametrize(
    ("six", "expected"),
    [
        # a1 = (2,0,0), a2 = (1,3,0): x = e1, z = normalize(e1 × (1,3,0)) = e3, y = e3 × e1 = e2
        ([2, 0, 0, 1, 3, 0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        # a1 = (1,1,0), a2 = (0,0,5): x = (1,1,0)/√2, z = normalize((5,−5,0)/√2) = (1,−1,0)/√2, y = z × x = e3
        ([1, 1, 0, 0, 0, 5], [[S, 0, S], [S, 0, -S], [0, 1, 0]]),
    ],
)
def test_gram_schmidt_matches_6drepnet_by_hand(six, expected):
    r = rotation_from_6d(torch.tensor([six], dtype=torch.float32))[0]
    assert torch.allclose(r, torch.tensor(expected, dtype=torch.float32), atol=1e-6)


def test_6d_of_a_rotation_gives_it_back_and_the_angles_read_back():
    g = torch.Generator().manual_seed(1)
    pose = torch.stack([torch.rand(500, generator=g) * 170 - 85, torch.rand(500, generator=g) * 120 - 60,
                        torch.rand(500, generator=g) * 120 - 60], 1)  # fmt: skip
    r = rotation_torch(pose)
    assert torch.allclose(rotation_from_6d(rotation_to_6d(r)), r, atol=1e-5)
    assert torch.allclose(angles_torch(rotation_from_6d(rotation_to_6d(r))), pose, atol=2e-3)


@pytest.mark.parametrize(
    ("a", "b", "angle"),
    [
        ((30, 0, 0), (0, 0, 0), 30.0),
        ((0, 90, 0), (0, 0, 0), 90.0),
        ((0, 0, -45), (0, 0, 0), 45.0),
        ((10, 0, 0), (130, 0, 0), 120.0),  # one axis: the difference
        ((0, 0, 0), (180, 0, 0), 180.0),
    ],
)
def test_geodesic_loss_is_the_known_angle(a, b, angle):
    ra = rotation_torch(torch.tensor([a], dtype=torch.float32))
    assert geodesic_deg(ra, rotation_torch(torch.tensor([b], dtype=torch.float32))).item() == pytest.approx(
        angle, abs=0.05
    )
    if b == (0, 0, 0):
        assert geodesic_loss(ra, torch.zeros(1, 3)).item() == pytest.approx(angle, abs=0.05)


def test_geodesic_angle_agrees_with_scipy_magnitude():
    rng = np.random.default_rng(2)
    r1, r2 = Rotation.random(200, random_state=rng), Rotation.random(200, random_state=rng)
    expected = np.degrees((r1 * r2.inv()).magnitude())
    got = geodesic_deg(
        torch.tensor(r1.as_matrix(), dtype=torch.float32), torch.tensor(r2.as_matrix(), dtype=torch.float32)
    )
    assert np.allclose(got.numpy(), expected, atol=0.05)


def test_mirrored_angles_give_the_reflected_rotation():
    rng = np.random.default_rng(3)
    m = np.diag([-1.0, 1.0, 1.0])
    poses = rng.uniform([-89, -60, -60], [89, 60, 60], size=(200, 3))
    r = rotation(poses[:, 0], poses[:, 1], poses[:, 2])
    rm = rotation(*mirror(poses).T)
    assert np.allclose(rm, m @ r @ m, atol=1e-12)
    # the torch builder the loss uses, and the 6D target: the first two columns of M·R·M
    rt = rotation_torch(torch.tensor(mirror(poses), dtype=torch.float64))
    assert np.allclose(rotation_to_6d(rt).numpy(), rotation_to_6d(torch.tensor(m @ r @ m)).numpy(), atol=1e-12)


def test_mirroring_the_projection_is_projecting_the_mirrored_face_with_the_mirrored_pose():
    """Image-space check: flip the projected points (u → w − u) of a 3D shape X seen at pose p; they
    are the projection of the reflected shape M·X at the mirrored pose (and for a symmetric face M·X is
    the same face with its left and right points swapped, which the reader's iBUG permutation does)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(68, 3))
    pose = np.array([35.0, -12.0, 20.0])
    w, t = 112.0, (56.0, 60.0)
    uv = project(x, rotation(*pose), 30.0, t)
    flipped = np.stack([w - uv[:, 0], uv[:, 1]], 1)
    mirrored = project(x * [-1, 1, 1], rotation(*mirror(pose)), 30.0, (w - t[0], t[1]))
    assert np.allclose(flipped, mirrored, atol=1e-9)
