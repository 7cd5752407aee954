"""Conformance: the 3DDFA_V2 teacher's pose, mapped to pltd's convention, against 300W-LP's truth.

Outside truth:
- the real 300W-LP render `../shared/conformance/300w_lp/IBUG_image_008_1_0` (`Pose_Para`: pitch
  −7.584°, yaw −44.009°, roll +3.208°; `pt2d`);
- 3DDFA_V2's own read-out, cleardusk/3DDFA_V2 `utils/pose.py` at commit
  19f79c9b9bafff675685f419a3157133901a0ed6 (`P2sRt`, `matrix2angle`, written out below as it is
  written there), cropped as its `TDDFA_ONNX.py` crops with `crop_policy='landmark'`: on this
  fixture it reads yaw −45.0°, pitch +10.8°, roll +4.1° (the figures the issue reports; the pitch
  sign is its read-out's, see `pltd.stages.landmarks.tddfa`);
- the sample's faces and their horizontal mirrors (a mirror maps (yaw, pitch, roll) to
  (−yaw, pitch, −roll): a property of the convention, not of pltd's code).
"""

from __future__ import annotations

from math import asin, atan2, cos, degrees

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pltd.pose import mean_pose
from pltd.stages.landmarks import tddfa
from pltd.stages.landmarks.geometry import nme
from pltd.stages.landmarks.views import make_views
from tests.helpers import CONFORMANCE, conformance_files

FIXTURE = CONFORMANCE / "300w_lp" / "IBUG_image_008_1_0"


def matrix2angle_3ddfa_v2(r: np.ndarray) -> tuple[float, float, float]:
    """3DDFA_V2 `matrix2angle` (non-degenerate branch), in degrees: (yaw, pitch, roll) as it names them."""
    x = asin(r[2, 0])
    y = atan2(r[2, 1] / cos(x), r[2, 2] / cos(x))
    z = atan2(r[1, 0] / cos(x), r[0, 0] / cos(x))
    return degrees(x), degrees(y), degrees(z)


@pytest.fixture(scope="module")
def fixture():
    conformance_files(FIXTURE.with_suffix(".mat"), FIXTURE.with_suffix(".jpg"))
    mat = scipy.io.loadmat(FIXTURE.with_suffix(".mat"))
    img = np.asarray(Image.open(FIXTURE.with_suffix(".jpg")).convert("RGB"))
    truth = np.degrees(mat["Pose_Para"][0][[1, 0, 2]])  # yaw, pitch, roll
    return img, mat["pt2d"].T.astype(float), truth


@pytest.fixture(scope="module")
def teacher():
    return tddfa.Tddfa()


def test_3ddfa_own_readout_and_pltd_convention_on_the_fixture(fixture, teacher):
    img, pt2d, truth = fixture
    roi = tddfa.roi_from_landmarks(pt2d)[None]
    raw = teacher.net(tddfa.crop(img, roi[0])[None])
    mean, std = tddfa._statistics()
    cam = (raw[0] * std + mean)[:12].reshape(3, 4)
    own = matrix2angle_3ddfa_v2(tddfa.orthonormal_rows(cam[None, :, :3])[0])
    # 3DDFA_V2's read-out: its pitch has the opposite sign of 300W-LP's
    assert own == pytest.approx((-45.0, 10.8, 4.1), abs=0.3)
    pts, pose = tddfa.decode(raw, roi)
    assert np.all(np.abs(pose[0] - truth) < 8), (pose[0], truth)
    assert nme(pts[0][17:], pt2d[17:]) < 0.07  # inner points (3DDFA's jaw is 3D-style, pt2d's is not)


@pytest.mark.parametrize("mirrored", [False, True])
def test_teacher_views_on_the_fixture_and_its_mirror(fixture, teacher, mirrored):
    img, pt2d, truth = fixture
    if mirrored:
        img, truth = img[:, ::-1].copy(), truth * [-1, 1, -1]
        pt2d = np.c_[img.shape[1] - 1 - pt2d[:, 0], pt2d[:, 1]]
    samples = teacher(make_views(img, np.r_[pt2d.min(axis=0), pt2d.max(axis=0)], 8, 256, seed=1))
    poses = np.array([s.pose for s in samples])
    assert np.all(np.abs(poses - truth) < 8), (poses, truth)


def test_mirrored_sample_faces_negate_yaw_and_roll(sample_dir, teacher):
    """Every HELEN render of the embedded sample and its mirror image (8 views each, mean pose)."""
    files = sorted((sample_dir / "300w_lp" / "HELEN").glob("*.jpg"))
    assert len(files) >= 10
    errors = []
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        pt = scipy.io.loadmat(f.with_suffix(".mat"))["pt2d"].T
        box, w = np.r_[pt.min(axis=0), pt.max(axis=0)], img.shape[1]
        a = mean_pose(np.array([s.pose for s in teacher(make_views(img, box, 8, 256, 0))]))
        flipped = np.array([w - box[2], box[1], w - box[0], box[3]])
        b = mean_pose(np.array([s.pose for s in teacher(make_views(img[:, ::-1].copy(), flipped, 8, 256, 0))]))
        errors.append(np.array(a) - np.array(b) * [-1, 1, -1])
        if abs(a[0]) > 8:
            assert np.sign(a[0]) == -np.sign(b[0])
    errors = np.abs(np.array(errors))
    assert errors[:, [0, 2]].max() < 6, errors  # measured: yaw ≤ 4.3°, roll ≤ 5.5°
    assert np.median(errors, axis=0).max() < 3
