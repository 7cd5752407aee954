"""PnP pose cross-check.

- `test_opencv_projection_with_the_converted_rotation_lands_on_pltds_projection` is a conformance
  test: OpenCV's own pinhole projection (`cv2.projectPoints`, its documented model
  u = f·x/z + c_x, v = f·y/z + c_y) with R_cv = diag(1, −1, −1)·R lands on `pltd.pose.project`'s
  points with R, the derivation in `stages/landmarks/pnp.py`'s docstring.
- the others are consistency tests (pltd vs pltd): PnP against `fit_pose` on synthetic projections.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from pltd.pose import geodesic_deg, project, rotation
from pltd.stages.landmarks.geometry import fit_pose
from pltd.stages.landmarks.mean_face import load_mean_face
from pltd.stages.landmarks.pnp import OPENCV_FROM_PLTD, camera, pltd_rotation, pnp_pose, pnp_rotation, pose_agreement

FACE = load_mean_face()
SIZE = (400.0, 400.0)
NOSE_TIP = 30


def image_of(yaw, pitch, roll, scale=100.0) -> np.ndarray:
    return project(FACE, rotation(yaw, pitch, roll), scale, np.array([200.0, 210.0]))


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(30, 0, 0), (-45, 15, 10), (10, -25, -30), (70, 5, 0)])
def test_opencv_projection_with_the_converted_rotation_lands_on_pltds_projection(yaw, pitch, roll):
    r = rotation(yaw, pitch, roll)
    k = camera(*SIZE)
    depth = 1e6  # far away: OpenCV's perspective tends to the scaled orthographic projection
    scale = k[0, 0] / depth
    t = np.array([(200.0 - k[0, 2]) / scale, (210.0 - k[1, 2]) / scale, depth])
    rvec = cv2.Rodrigues(OPENCV_FROM_PLTD @ r)[0]
    seen = cv2.projectPoints(FACE, rvec, t, k, None)[0].reshape(-1, 2)
    assert np.abs(seen - project(FACE, r, scale, np.array([200.0, 210.0]))).max() < 1e-3
    assert np.allclose(pltd_rotation(rvec), r, atol=1e-9)
    if yaw == 30:  # pltd's sign: yaw > 0 puts the nose tip left of the face's midline in the image
        assert seen[NOSE_TIP, 0] < (seen[0, 0] + seen[16, 0]) / 2


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"), list(itertools.product((-70, -40, 0, 25, 60), (-30, 0, 20), (-25, 0, 15)))
)
def test_pnp_pose_agrees_with_the_fitted_pose_within_one_degree(yaw, pitch, roll):
    rng = np.random.default_rng(abs(yaw * 11 + pitch * 5 + roll))
    pts = image_of(yaw, pitch, roll) + rng.normal(0, 0.3, (68, 2))
    fitted = fit_pose(pts, FACE)[0]
    r_pnp = pnp_rotation(pts, FACE, SIZE)
    assert r_pnp is not None
    assert geodesic_deg(r_pnp, rotation(*fitted)) < 1.0
    assert geodesic_deg(r_pnp, rotation(yaw, pitch, roll)) < 1.0
    assert pose_agreement(pts, fitted, FACE, SIZE) < 1.0


def test_agreement_measures_a_wrong_label():
    pts = image_of(20, 5, -5)
    assert abs(pose_agreement(pts, (35.0, 5.0, -5.0), FACE, SIZE) - 15.0) < 1.0  # a yaw 15° off
    assert abs(pose_agreement(pts, (-20.0, 5.0, 5.0), FACE, SIZE) - geodesic_deg(rotation(20, 5, -5),
                                                                               rotation(-20, 5, 5))) < 1.0  # fmt: skip
    yaw, pitch, roll = pnp_pose(pts, FACE, SIZE)
    assert abs(yaw - 20) < 1 and abs(pitch - 5) < 1 and abs(roll + 5) < 1


def test_missing_inputs_give_no_agreement():
    pts = image_of(0, 0, 0)
    assert pose_agreement(None, (0, 0, 0), FACE, SIZE) is None
    assert pose_agreement(pts, None, FACE, SIZE) is None
    assert pose_agreement(pts, (float("nan"), 0, 0), FACE, SIZE) is None
    bad = pts.copy()
    bad[40] = np.nan
    assert pnp_rotation(bad, FACE, SIZE) is None


def _label(pts, pose):
    from pltd.stages.landmarks.algorithm import ImageLabel
    from pltd.stages.landmarks.fitting import Fit

    return ImageLabel(Fit(pts, pose, [0, 1, 2], 0.01, 0.02, None), ["teacher"] * 3, 3, None)


def test_the_stage_check_is_off_by_default_and_rejects_above_the_limit():
    """landmarks.pose_check off: no PnP, nothing changes; max_pose_disagreement: its own rejection reason."""
    from pltd.stages.landmarks.algorithm import cross_check_poses
    from pltd.stages.landmarks.rows import label_row, rejection_detail
    from pltd.stages.landmarks.settings import LandmarkSettings

    pts = image_of(20, 5, -5)
    labels = [_label(pts, (20.0, 5.0, -5.0)), _label(pts, (45.0, 5.0, -5.0))]
    rows = [{"image_id": "a", "source": "s"}, {"image_id": "b", "source": "s"}]
    cross_check_poses(labels, rows, [SIZE, SIZE], LandmarkSettings(), FACE)
    assert [x.pose_agreement for x in labels] == [None, None] and [x.fit.reason for x in labels] == [None, None]
    cross_check_poses(labels, rows, [SIZE, SIZE], LandmarkSettings(max_pose_disagreement=10), FACE)
    assert labels[0].pose_agreement < 1 and labels[0].fit.reason is None
    assert abs(labels[1].pose_agreement - 25) < 1 and labels[1].fit.reason == "pose_disagreement"
    assert "from the label's pose" in rejection_detail(labels[1], 0.05)
    assert label_row(rows[0], labels[0], np.zeros(4))["pose_agreement"] == labels[0].pose_agreement


def test_ground_truth_rows_keep_their_label_and_the_audit_splits_by_agreement():
    """A ground-truth row gets its own agreement and its pseudo-label's; the audit compares errors."""
    import pyarrow as pa

    from pltd.schemas import LANDMARKS
    from pltd.stages.landmarks.algorithm import cross_check_poses
    from pltd.stages.landmarks.audit import audit, format_audit
    from pltd.stages.landmarks.rows import audit_columns, label_row
    from pltd.stages.landmarks.settings import LandmarkSettings
    from pltd.stages.landmarks.views import make_views

    truth = image_of(20, 5, -5)
    gt_row = {"image_id": "g", "source": "s", "landmarks_gt": truth.reshape(-1).tolist(), "pose_gt": [20.0, 5.0, -5.0]}
    rows, labels = [], []
    for k, (shift, pose) in enumerate([(0.0, (20.0, 5.0, -5.0)), (4.0, (-10.0, 5.0, -5.0))]):
        label = _label(truth + shift, pose)  # a good pseudo-label, and one 4 px off with a wrong pose
        cross_check_poses([label], [gt_row], [SIZE], LandmarkSettings(pose_check=True), FACE)
        view0 = make_views(np.zeros((400, 400, 3), np.uint8), np.array([100, 100, 300, 300]), 1, 256, 0)[0]
        rows.append(
            label_row(gt_row | {"image_id": f"g{k}"}, label, np.zeros(4), gt_row["landmarks_gt"])
            | audit_columns(label, view0, None, None)
        )
        labels.append(label)
    assert rows[0]["pose_agreement"] < 1 and rows[0]["pseudo_pose_agreement"] < 1
    assert rows[1]["pseudo_pose_agreement"] > 25 and rows[1]["label_kind"] == "ground_truth"
    report = audit(pa.Table.from_pylist(rows, schema=LANDMARKS))
    good, bad = report["checked/pose_agreement<=10"], report["checked/pose_agreement>10"]
    assert good["n"] == bad["n"] == 1 and good["nme"] < 1e-9 < bad["nme"] and abs(bad["mae_yaw"] - 30) < 1e-6
    assert report["ground_truth_pose_agreement"]["share_above_10"] == 0.0
    assert any("ground truth's own PnP agreement" in line for line in format_audit(report))
