"""Self-occlusion labels.

Conformance: on a synthetic face whose points lie on the unit sphere the true surface normal of a
point is the point itself, so the estimated normals (Delaunay vertex normals of the 68 points) are
checked against the exact ones, and the visibility against the exact back-face test wherever the
estimate's error bound cannot flip it. The side is derived from 300W-LP's convention
(`pltd.pose`: R = (Rz·Ry·Rx)ᵀ; a pure yaw gives z' = sin(yaw)·x + cos(yaw)·z, and x' = cos(yaw)·x −
sin(yaw)·z): at yaw > 0 the nose tip goes to the image's left (x' < 0) and the image-left half of
the face (x < 0: iBUG jaw points 0–7, the subject's right) turns away from the camera.
Consistency: the shipped mean face hides the same far jaw.
"""

from __future__ import annotations

import numpy as np
import pytest

from pltd.pose import rotation
from pltd.stages.landmarks.visibility import self_occlusion, vertex_normals, visible_from_normals

MAX_NORMAL_ERROR_DEG = 25.0  # measured 22° at most, on the jaw (boundary points see only inner triangles)


def sphere(theta, psi) -> np.ndarray:
    """Points on the unit sphere at longitude θ (toward +x) and latitude ψ (toward +y), degrees."""
    t, p = np.broadcast_arrays(np.radians(theta), np.radians(psi))
    return np.stack([np.sin(t) * np.cos(p), np.sin(p), np.cos(t) * np.cos(p)], -1)


def synthetic_face() -> np.ndarray:
    """68 points in iBUG order on the front of the unit sphere (jaw 0 at the image's left ear)."""
    t = (np.arange(17) - 8) / 8
    jaw = sphere(80 * t, 15 - 75 * (1 - np.abs(t)))
    brows = sphere(np.r_[np.linspace(-55, -10, 5), np.linspace(10, 55, 5)], 35)
    bridge, nose = sphere(np.zeros(4), np.linspace(25, 2, 4)), sphere(np.linspace(-15, 15, 5), -8)
    a, b, c = (np.radians(np.arange(n) * 360 / n) for n in (6, 12, 8))
    eyes = [sphere(x + 10 * np.cos(a), 20 + 4 * np.sin(a)) for x in (-30, 30)]
    mouth, inner = sphere(25 * np.cos(b), -30 + 10 * np.sin(b)), sphere(12 * np.cos(c), -30 + 4 * np.sin(c))
    return np.concatenate([jaw, brows, bridge, nose, *eyes, mouth, inner])


def test_estimated_normals_are_close_to_the_true_ones():
    x = synthetic_face()
    err = np.degrees(np.arccos(np.clip((vertex_normals(x) * x).sum(1), -1, 1)))
    assert err.max() < MAX_NORMAL_ERROR_DEG
    assert np.median(err) < 8.0  # measured 6.5°: inner points, whose triangles surround them


@pytest.mark.parametrize("pose", [(60, 0, 0), (-60, 0, 0), (30, 20, -10), (-75, -15, 5), (0, 45, 0)])
def test_visibility_is_the_exact_back_face_test_away_from_the_terminator(pose):
    x = synthetic_face()
    r = rotation(*pose)
    exact_z = (r @ x.T)[2]  # the true normal is the point
    est = visible_from_normals(r[None], vertex_normals(x))[0]
    sure = np.abs(exact_z) > np.sin(np.radians(MAX_NORMAL_ERROR_DEG))
    assert sure.sum() >= 20  # not vacuous: 25–39 of the 68 points are decided
    assert np.array_equal(est[sure], exact_z[sure] > 0)


def test_at_yaw_60_the_far_jaw_is_hidden_and_the_side_follows_the_convention():
    x = synthetic_face()
    n = vertex_normals(x)
    nose_tip = np.array([0.0, 0.0, 1.0])
    assert (rotation(60, 0, 0) @ nose_tip)[0] < 0  # yaw > 0: nose tip to the image's left
    assert np.all(x[:8, 0] < 0) and np.all(x[9:17, 0] > 0)  # jaw 0–7 image-left, 9–16 image-right
    plus, minus, front = (visible_from_normals(rotation(y, 0, 0)[None], n)[0] for y in (60, -60, 0))
    assert not plus[:5].any() and plus[8:17].all()  # the image-left jaw turned away
    assert not minus[12:17].any() and minus[:9].all()  # mirrored
    assert front.all()


def test_the_shipped_mean_face_hides_the_same_far_jaw():
    plus, minus, front = self_occlusion(np.array([[60.0, 0, 0], [-60.0, 0, 0], [0.0, 0, 0]]))
    assert not plus[:5].any() and plus[9:17].all()
    assert not minus[12:17].any() and minus[:8].all()
    assert front.all()
    assert self_occlusion([60.0, 0.0, 0.0]).shape == (68,)
