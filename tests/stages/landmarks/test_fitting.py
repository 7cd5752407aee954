"""Selective fitting, validity, AdjustUpperEyes, index matching, views."""

from __future__ import annotations

import numpy as np
import pytest

from pltd.pose import project, rotation
from pltd.stages.landmarks.blink import adjust_upper_eyes, eye_aspect_ratio, sigma_from_ear
from pltd.stages.landmarks.fitting import Validity, invalid_reason, selective_fit
from pltd.stages.landmarks.mean_face import load_mean_face
from pltd.stages.landmarks.mesh_map import learn_index_map
from pltd.stages.landmarks.views import make_views

BASE = project(load_mean_face(), rotation(0, 0, 0), 60.0, np.array([128.0, 128.0]))  # ~150 px face


def test_planted_outliers_are_dropped_and_the_mean_accepted():
    rng = np.random.default_rng(0)
    good = [BASE + rng.normal(0, 0.5, BASE.shape) for _ in range(6)]
    bad = [BASE + [25, 0], BASE * 1.3 - 40]
    fit = selective_fit(good[:3] + bad + good[3:], [(1.0, 2.0, 3.0)] * 8, t_d=0.05)
    assert fit.reason is None and len(fit.kept) == 3
    assert not {3, 4} & set(fit.kept)  # the planted outliers sit at indices 3 and 4
    assert np.abs(fit.landmarks - BASE).mean() < 1.0
    assert fit.pose == pytest.approx((1.0, 2.0, 3.0))


def test_spread_out_samples_are_rejected():
    samples = [BASE + [dx, 0] for dx in (0, 12, 24, 36)]  # neighbours 12 px apart on a ~150 px face
    fit = selective_fit(samples, [None] * 4, t_d=0.05)
    assert fit.reason == "fit_spread_above_td" and fit.landmarks is None and fit.max_distance > 0.05


def test_too_few_valid_samples():
    assert selective_fit([BASE, BASE], [None, None], min_samples=3).reason == "too_few_valid_samples"


def test_validity_checks():
    v = Validity()
    assert invalid_reason(BASE, 256, v) is None
    assert invalid_reason(BASE * 0.05 + 120, 256, v) == "too_small"
    collapsed = BASE.copy()
    collapsed[:, 0] = 128 + np.linspace(-1, 1, 68)
    assert invalid_reason(collapsed, 256, v) == "too_small"  # no width at all
    narrow = BASE.copy()
    narrow[:, 0] = 128 + (BASE[:, 0] - 128) * 0.02
    narrow[:2, 0] = [90, 166]  # wide enough a box, but the points bunch at the centre
    assert invalid_reason(narrow, 256, v) == "x_clustered"
    assert invalid_reason(BASE + [400, 0], 256, v) == "outside_view"
    assert invalid_reason(np.full((68, 2), np.nan), 256, v) == "non_finite"


def test_adjust_upper_eyes_closes_with_sigma_one_and_leaves_with_zero():
    closed = adjust_upper_eyes(BASE, (1.0, 1.0))
    for up, low in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert np.allclose(closed[up], BASE[low])
    assert np.allclose(adjust_upper_eyes(BASE, (0.0, 0.0)), BASE)
    half = adjust_upper_eyes(BASE, (0.5, 0.0))
    assert np.allclose(half[37], (BASE[37] + BASE[41]) / 2) and np.allclose(half[43], BASE[43])
    untouched = [i for i in range(68) if i not in (37, 38, 43, 44)]
    assert np.allclose(closed[untouched], BASE[untouched])


def test_ear_mapping_open_and_closed():
    mesh = np.zeros((468, 3))
    for p1, p2, p3, p4, p5, p6 in ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380)):
        mesh[p1, :2], mesh[p4, :2] = (0, 0), (30, 0)
        mesh[p2, :2], mesh[p3, :2], mesh[p6, :2], mesh[p5, :2] = (10, -5), (20, -5), (10, 5), (20, 5)
    ear = eye_aspect_ratio(mesh)
    assert ear == pytest.approx((1 / 3, 1 / 3))
    assert sigma_from_ear(ear[0]) == 0.0 and sigma_from_ear(0.0) == 1.0 and 0 < sigma_from_ear(0.14) < 1


def test_index_matching_recovers_a_known_permutation():
    rng = np.random.default_rng(1)
    truth = rng.choice(468, 68, replace=False)
    teacher, meshes = [], []
    for _ in range(20):
        mesh = rng.uniform(0, 200, (468, 3))
        meshes.append(mesh)
        teacher.append(mesh[truth, :2] + rng.normal(0, 0.3, (68, 2)))
    idx, err = learn_index_map(teacher, meshes)
    assert np.array_equal(idx, truth) and err.max() < 0.01


def test_views_map_back_to_source_pixels():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    box = np.array([150.0, 100.0, 250.0, 220.0])
    views = make_views(image, box, 8, 128, seed=7)
    assert len(views) == 8 and all(v.image.shape == (128, 128, 3) for v in views)
    src = np.array([[200.0, 160.0], [170.0, 120.0]])
    for v in views:
        assert np.allclose(v.to_source(v.to_view(src)), src)
        x, y = v.to_view(src)[0]
        assert abs(int(v.image[int(y), int(x)].astype(int).sum()) - int(image[160, 200].astype(int).sum())) < 200
    assert {round(v.scale, 3) for v in views} != {round(views[0].scale, 3)}  # different crops
    again = make_views(image, box, 8, 128, seed=7)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(views, again, strict=True))
