"""Conformance: the default fused label beats one pass of each of its sources on real AFLW2000-3D photos.

Outside truth: the dataset's own 3D-style 68 points (`pt3d_68`) and `Pose_Para` of ten photos of the
development split in `../shared/conformance/aflw2000/` (every twentieth file name; provenance in its
README). Nothing in the default was fitted to these images (the consensus has no learned weight,
docs/labels.md). Metrics as the field's protocol: NME = mean point distance / sqrt(w·h) of the ground
truth's box, on the inner 51 points (17–67, the same in both jaw styles) and on all 68 (the PLTD is
3D-style by default, as the ground truth).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pltd.stages.landmarks.geometry import face_size
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.stage import Models, Work, label_chunk
from pltd.stages.landmarks.views import make_views, seed_of
from tests.helpers import CONFORMANCE, conformance_files

FOLDER = CONFORMANCE / "aflw2000"


def inner_nme(pred: np.ndarray, truth: np.ndarray, points=slice(17, 68)) -> float:
    return float(np.linalg.norm(pred[points] - truth[points], axis=1).mean() / face_size(truth))


@pytest.fixture(scope="module")
def labelled():
    names = sorted(p.stem for p in FOLDER.glob("*.jpg"))[::20] if FOLDER.is_dir() else []
    conformance_files(*(FOLDER / f"{n}.mat" for n in names or ["image00002"]))
    s = LandmarkSettings(mean_face="shipped")
    work, truth = [], []
    for n in names:
        mat = scipy.io.loadmat(FOLDER / f"{n}.mat")
        gt = mat["pt3d_68"][:2].T.astype(float)
        img = np.asarray(Image.open(FOLDER / f"{n}.jpg").convert("RGB"))
        box = np.r_[gt.min(axis=0), gt.max(axis=0)]  # the protocol's box: the ground truth's
        work.append(Work({"image_id": n}, img, box, make_views(img, box, s.views, s.view_size, seed_of(n), s.mirror)))
        truth.append((gt, np.degrees(mat["Pose_Para"][0][[1, 0, 2]])))
    labels = label_chunk(work, s, Models(s))
    return work, labels, truth


def test_the_fused_label_beats_each_single_pass(labelled):
    work, labels, truth = labelled
    assert len(labels) == 10 and all(x.fit.reason is None for x in labels)
    fused, teacher, second = [], [], []
    for w, label, (gt, _) in zip(work, labels, truth, strict=True):
        fused.append(inner_nme(label.fit.landmarks, gt))
        teacher.append(inner_nme(w.views[0].to_source(w.teacher[0].landmarks), gt))
        if w.second[0] is not None:
            second.append(inner_nme(w.views[0].to_source(w.second[0].landmarks), gt))
        # per image: never worse than the worse of the two single passes
        assert fused[-1] <= max(teacher[-1], second[-1] if w.second[0] is not None else 0) + 1e-9
    assert np.mean(fused) < np.mean(teacher) and np.mean(fused) < np.mean(second)
    assert np.mean(fused) < 0.03


def test_the_blended_pose_is_close_and_fit_error_orders_the_worst(labelled):
    _, labels, truth = labelled
    err = np.array([np.abs(np.subtract(x.fit.pose, t)) for x, (_, t) in zip(labels, truth, strict=True)])
    assert err.mean() < 5.0  # degrees, the mean over the three axes
    nme68 = np.array([inner_nme(x.fit.landmarks, gt, slice(None)) for x, (gt, _) in zip(labels, truth, strict=True)])
    fit_error = np.array([x.fit.fit_error for x in labels])
    # the label with the largest expected error is among the three worst
    assert nme68[fit_error.argmax()] >= np.sort(nme68)[-3]
