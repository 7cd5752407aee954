"""Pose fitting on synthetic projections, rotation averaging, NME (consistency tests: pltd vs pltd).

The convention itself is tested against outside truth in tests/conformance/test_pose_convention.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pltd.pose import mean_pose, project, rotation
from pltd.stages.landmarks.geometry import ALL_POINTS, face_size, fit_pose, nme
from pltd.stages.landmarks.mean_face import load_mean_face

FACE = load_mean_face()


def image_of(yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    return project(FACE, rotation(yaw, pitch, roll), 100.0, np.array([200.0, 200.0]))


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"), list(itertools.product((-60, -25, 0, 40, 70), (-30, 0, 25), (-35, 0, 20)))
)
def test_fit_recovers_known_pose_within_one_degree(yaw, pitch, roll):
    rng = np.random.default_rng(abs(yaw * 7 + pitch * 3 + roll))
    pts = image_of(yaw, pitch, roll) + rng.normal(0, 0.3, (68, 2))  # 0.3 px noise on a ~200 px face
    (y, p, r), scale, _, rms = fit_pose(pts, FACE, ALL_POINTS)
    assert abs(y - yaw) < 1 and abs(p - pitch) < 1 and abs(r - roll) < 1
    assert abs(scale - 100) < 2 and rms < 1


def test_mean_pose_averages_rotations_across_the_wrap():
    yaw, pitch, roll = mean_pose(np.array([[0, 0, 179.0], [0, 0, -179.0]]))
    assert abs(abs(roll) - 180) < 1e-6 and abs(yaw) < 1e-6 and abs(pitch) < 1e-6
    yaw, _, _ = mean_pose(np.array([[10.0, 0, 0], [20.0, 0, 0], [30.0, 0, 0]]))
    assert abs(yaw - 20) < 1e-6


def test_nme_uses_the_ground_truth_box():
    truth = np.array([[0, 0], [40, 0], [0, 10], [40, 10]] * 17, float)
    assert face_size(truth) == pytest.approx(20.0)
    assert nme(truth + [2, 0], truth) == pytest.approx(0.1)
