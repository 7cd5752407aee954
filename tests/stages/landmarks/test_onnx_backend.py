"""ONNX backends: plumbing with random-weight graphs that have the real models' input/output
signatures (consistency tests: they check feeding, batching and decoding, not accuracy), and the
batched pose fit against the single one."""

from __future__ import annotations

import numpy as np
import pytest

from pltd.pose import project, rotation
from pltd.stages.landmarks import onnx_backend
from pltd.stages.landmarks.bfm import keypoint_bases
from pltd.stages.landmarks.geometry import fit_pose, fit_pose_batch
from pltd.stages.landmarks.onnx_backend import OnnxAdapter, OnnxBlink, OnnxNetwork
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views
from tests.helpers import random_graph


def test_fixed_batch_graph_runs_batched_and_equals_one_at_a_time(tmp_path):
    path = random_graph(tmp_path / "t.onnx", 120, 62)  # 3DDFA_V2's signature, batch fixed at 1
    net = OnnxNetwork(path, onnx_backend.PRESETS["3ddfa_v2"])
    imgs = np.random.default_rng(1).integers(0, 256, (5, 120, 120, 3), dtype=np.uint8)
    batched = net(imgs)
    assert batched.shape == (5, 62)
    single = np.concatenate([net(imgs[i : i + 1]) for i in range(5)])
    assert np.allclose(batched, single, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])


def test_normalisation_colour_and_layout(tmp_path):
    a = OnnxAdapter(input_size=8, colour="bgr", mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), layout="nhwc")
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[..., 0], img[..., 2] = 50, 100  # R = 50, B = 100
    x = a.numpy_input(img)
    assert x.shape == (1, 8, 8, 3)
    assert x[0, 0, 0].tolist() == [(100 - 10) / 2, (0 - 20) / 4, (50 - 30) / 5]  # B, G, R
    nchw = OnnxAdapter(input_size=8).numpy_input(img)
    assert nchw.shape == (1, 3, 8, 8) and nchw[0, 0, 0, 0] == pytest.approx(50 / 127.5 - 1)
    with pytest.raises(ValueError, match="expected N×16×16×3"):
        OnnxAdapter(input_size=16).numpy_input(img)


def test_output_width_must_match_the_decoding(tmp_path):
    path = random_graph(tmp_path / "t.onnx", 64, 7)
    with pytest.raises(ValueError, match="output width 7"):
        OnnxNetwork(path, OnnxAdapter(input_size=64, decoding="blink_logit"))


def test_onnx_teachers_and_blink_decode(tmp_path):
    import skimage

    views = make_views(skimage.data.astronaut(), np.array([175.0, 76.0, 265.0, 166.0]), 3, 256, seed=0)
    own = OnnxAdapter(path=random_graph(tmp_path / "own.onnx", 128, 139, scale=1.0), input_size=128)
    samples = create_source("onnx", adapter=own)(views)
    assert len(samples) == 3 and samples[0].landmarks.shape == (68, 2) and len(samples[0].pose) == 3
    tddfa = own.model_copy(update={"path": random_graph(tmp_path / "3d.onnx", 120, 62), "input_size": 120,
                                   "decoding": "3ddfa_62", "colour": "bgr", "std": (128.0,) * 3})  # fmt: skip
    samples = create_source("onnx", adapter=tddfa)(views)
    assert all(np.isfinite(s.landmarks).all() and np.isfinite(s.pose).all() for s in samples)
    blink = OnnxBlink(OnnxAdapter(path=random_graph(tmp_path / "b.onnx", 64, 1), input_size=64, decoding="blink_logit"))
    p = blink([np.full((64, 64, 3), 128, np.uint8)] * 4)
    assert p.shape == (4,) and np.all((p > 0) & (p < 1))


def test_settings_name_the_missing_adapter():
    with pytest.raises(ValueError, match="teacher_onnx"):
        LandmarkSettings(teacher="onnx")
    with pytest.raises(ValueError, match="blink_onnx"):
        LandmarkSettings(blink="onnx")


def test_fit_pose_batch_equals_fit_pose():
    u = keypoint_bases()[0]
    rng = np.random.default_rng(0)
    poses = np.c_[rng.uniform(-70, 70, 40), rng.uniform(-30, 30, 40), rng.uniform(-30, 30, 40)]
    pts = np.stack([project(u, rotation(*p), 1e-3, (120, 120)) + rng.normal(0, 0.5, (68, 2)) for p in poses])
    batched = fit_pose_batch(pts, u)
    for i in range(0, 40, 7):
        single = fit_pose(pts[i], u)
        assert np.allclose(batched[0][i], single[0], atol=1e-3) and batched[3][i] == pytest.approx(single[3], rel=1e-3)
    assert np.abs(batched[0] - poses).max() < 3
