"""Pose convention, pose fitting on synthetic projections, rotation averaging, NME."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pltd.stages.landmarks.geometry import angles, face_size, fit_pose, mean_pose, nme, project, rotation
from pltd.stages.landmarks.mean_face import load_mean_face

FACE = load_mean_face()


def rx(a):
    a = np.radians(a)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def ry(a):
    a = np.radians(a)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rz(a):
    a = np.radians(a)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_rotation_is_rz_ry_rx_and_angles_inverts_it():
    r = rotation(30, -20, 10)
    assert np.allclose(r, rz(10) @ ry(30) @ rx(-20))
    assert np.allclose(angles(r), (30, -20, 10))


def image_of(yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    return project(FACE, rotation(yaw, pitch, roll), 100.0, np.array([200.0, 200.0]))


def test_sign_directions_in_the_image():
    nose, top = 30, 27  # nose tip; nose bridge top sits above it
    front = image_of()
    assert image_of(yaw=20)[nose, 0] > front[nose, 0]  # yaw > 0: nose toward the image's right
    assert image_of(pitch=20)[nose, 1] > front[nose, 1]  # pitch > 0: looking down
    tilted = image_of(roll=20)
    # roll > 0: counter-clockwise on screen, the nose bridge moves toward the image's left of the chin
    assert (tilted[top, 0] - tilted[8, 0]) < (front[top, 0] - front[8, 0]) - 10


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"), list(itertools.product((-60, -25, 0, 40, 70), (-30, 0, 25), (-35, 0, 20)))
)
def test_fit_recovers_known_pose_within_one_degree(yaw, pitch, roll):
    rng = np.random.default_rng(abs(yaw * 7 + pitch * 3 + roll))
    pts = image_of(yaw, pitch, roll) + rng.normal(0, 0.3, (68, 2))  # 0.3 px noise on a ~200 px face
    (y, p, r), scale, _, rms = fit_pose(pts, FACE)
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
