"""Synthetic-occlusion robustness evaluation (AFLW2000-SO style): consistency tests
(pltd vs pltd) on a synthetic AFLW2000-format set with a random-weight network — plumbing only,
the numbers say nothing about a trained model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from pltd.checkpoints import save_checkpoint
from pltd.networks import create
from pltd.trainer.evaluation.model import EvalModel
from pltd.trainer.evaluation.occlusion import Occluded, aflw2000_occlusion, occlude


def test_occluders_lie_on_the_face_and_cover_the_asked_share():
    rng = np.random.default_rng(0)
    images = np.zeros((200, 112, 112, 3), np.uint8)
    out, rects = occlude(images, rng)
    face = 112 / 1.4
    lo, hi = (112 - face) / 2, (112 + face) / 2
    centres = (rects[:, :2] + rects[:, 2:]) / 2
    assert np.all((centres >= lo - 1) & (centres <= hi + 1))
    sides = (rects[:, 2:] - rects[:, :2]) / face
    inside = (rects[:, :2] > 0) & (rects[:, 2:] < 112)  # not clipped by the crop's border
    assert np.all(sides[inside] >= 0.25 - 0.02) and np.all(sides[inside] <= 0.5 + 0.02)
    changed = (out != 0).any(axis=3)
    for i in range(5):  # only the rectangle's pixels change (a zero drawn in it can stay zero)
        x0, y0, x1, y1 = rects[i]
        assert not changed[i, :y0].any() and not changed[i, y1:].any()
        assert not changed[i, :, :x0].any() and not changed[i, :, x1:].any()
    again, rects2 = occlude(images, np.random.default_rng(0))
    assert np.array_equal(rects, rects2) and np.array_equal(out, again)  # reproducible


@pytest.fixture(scope="module")
def synthetic_aflw2000(tmp_path_factory):
    root = tmp_path_factory.mktemp("aflw")
    rng = np.random.default_rng(1)
    for i in range(12):
        img = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG")
        (root / f"image{i:05d}.jpg").write_bytes(buf.getvalue())
        pts = np.stack([rng.uniform(40, 120, 68), rng.uniform(40, 120, 68), np.zeros(68)])
        pose = np.r_[rng.uniform(-0.5, 0.5), rng.uniform(-1.2, 1.2), rng.uniform(-0.3, 0.3), 0, 0, 0, 1]
        scipy.io.savemat(root / f"image{i:05d}.mat", {"pt3d_68": pts, "Pose_Para": pose[None]})
    return root


def test_clean_and_occluded_reports_side_by_side(synthetic_aflw2000, tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", create("iresnet_multi_tiny").eval(), "iresnet_multi_tiny", "multitask", 112)
    model = EvalModel(tmp_path / "m.pt", device="cpu")
    rep = aflw2000_occlusion(model, synthetic_aflw2000, seed=3)
    assert rep["clean"]["images"] == rep["occluded"]["images"] == 12
    assert set(rep["change"]) == {"pose_mae", "nme", "failure_rate_0.1"}
    assert rep["change"]["nme"] == pytest.approx(rep["occluded"]["nme"]["mean"] - rep["clean"]["nme"]["mean"])
    assert rep["change"]["pose_mae"] != 0.0  # the occluders reach the network
    # the wrapper occludes, the model alone does not
    x = np.random.default_rng(0).integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    assert not np.allclose(Occluded(model, 3)(x)["pose"], model(x)["pose"])
