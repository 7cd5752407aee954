"""The consensus fusion of Algorithm 1 (stages/landmarks/fusion.py) on small synthetic cases.

Consistency tests: the expected values are computed by hand from the module's stated rule (median per
source, u² from the direct-vs-mirror disagreement plus the floor, u⁻²-weighted inner points, the jaw
from the PLTD's style only); the real-photo check is in tests/conformance/test_fusion_aflw2000.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pltd.stages.landmarks.fitting import Fit
from pltd.stages.landmarks.fusion import FLOOR, SourceSamples, consensus, restyle_jaw
from pltd.stages.landmarks.geometry import face_size
from pltd.stages.landmarks.ibug import MIRROR68
from pltd.stages.landmarks.views import make_views


def face(seed: int = 0) -> np.ndarray:
    """68 points spread over a 100 px face."""
    rng = np.random.default_rng(seed)
    return np.column_stack([np.linspace(100, 200, 68), 150 + 50 * np.sin(np.arange(68))]) + rng.normal(0, 1, (68, 2))


def source(points: list[np.ndarray], mirrored: list[bool], style: str = "3d", reference: bool = False) -> SourceSamples:
    return SourceSamples(np.stack(points), np.array(mirrored), style, reference=reference)


def test_a_constant_offset_source_is_averaged_by_its_disagreement():
    truth = face()
    size = face_size(truth)
    # teacher: direct views 1 px right, mirrored ones 1 px left (a left–right bias the mirror cancels)
    t = source([truth + [1, 0]] * 2 + [truth - [1, 0]] * 2, [False, False, True, True])
    # second: 3 px low in every view, mirrored or not (it agrees with itself: only the floor)
    s = source([truth + [0, 3]] * 4, [False, False, True, True])
    fit = consensus([t, s], "3d", t_d=0.2)
    assert fit.reason is None and fit.kept == list(range(8))
    # the teacher's median is the truth (1 px either way), its u² = mean of (2 px)² over x and y = 2 px²
    w_t, w_s = 1 / (2.0 + (FLOOR * size) ** 2), 1 / (0.0 + (FLOOR * size) ** 2)
    expected_y = truth[17:, 1] + 3 * w_s / (w_t + w_s)
    assert fit.landmarks[17:, 1] == pytest.approx(expected_y, abs=1e-6)
    assert fit.landmarks[17:, 0] == pytest.approx(truth[17:, 0], abs=1e-6)
    # the jaw comes from the 3D-style sources only (both here): the same weighted mean
    assert fit.landmarks[:17, 1] == pytest.approx(truth[:17, 1] + 3 * w_s / (w_t + w_s), abs=1e-6)


def test_a_source_off_the_reference_is_charged_with_its_disagreement():
    """The same two sources as above, the teacher now a reference (trained on 300W-LP's own points):
    the second source's u² gains its squared disagreement with the teacher's estimate (3 px in y:
    mean over x and y = 4.5 px²), which its mirror test alone could not see."""
    truth = face()
    size = face_size(truth)
    t = source([truth + [1, 0]] * 2 + [truth - [1, 0]] * 2, [False, False, True, True], reference=True)
    s = source([truth + [0, 3]] * 4, [False, False, True, True])
    fit = consensus([t, s], "3d", t_d=0.2)
    floor = (FLOOR * size) ** 2
    w_t, w_s = 1 / (2.0 + floor), 1 / (4.5 + floor)
    assert fit.landmarks[17:, 1] == pytest.approx(truth[17:, 1] + 3 * w_s / (w_t + w_s), abs=1e-6)
    # the points the pose fit reads keep the mirror tests' weights alone (fusion step 5)
    w_s0 = 1 / floor
    assert fit.pose_points[17:, 1] == pytest.approx(truth[17:, 1] + 3 * w_s0 / (w_t + w_s0), abs=1e-6)
    # a stand-alone fit (`pose_from: fit`) reads the reference's estimate: the teacher's median, truth
    np.testing.assert_allclose(fit.reference_points, truth, atol=1e-9)
    # without a reference, or with every source one, nothing is added: the rule above
    for refs in ((False, False), (True, True)):
        a, b = (source(list(x.points), list(x.mirrored), "3d", r) for x, r in zip((t, s), refs, strict=True))
        plain = consensus([a, b], "3d", t_d=0.2)
        assert plain.landmarks[17:, 1] == pytest.approx(truth[17:, 1] + 3 * w_s0 / (1 / (2.0 + floor) + w_s0), abs=1e-6)
        # no reference: no reference points; every source one: their mirror-weighted mean, the pose points
        if refs[0]:
            np.testing.assert_allclose(plain.reference_points, plain.pose_points, atol=1e-9)
        else:
            assert plain.reference_points is None


def test_fit_reads_the_reference_points_and_blend_the_mirror_weighted_ones():
    """`fit_labels` (fusion step 5), consistency: the mean face projected frontal fits (0, 0, 0), and
    turned 10° in pitch fits 10°. With the turned points as `reference_points` and the frontal ones as
    the label and `pose_points`, `fit` reads the reference (10°); `blend` averages the fit of the pose
    points (0°) with the regressed pose already in the label (20° of pitch): 10°."""
    from pltd.pose import project, rotation
    from pltd.stages.landmarks.algorithm import ImageLabel, fit_labels
    from pltd.stages.landmarks.mean_face import load_mean_face

    mf = load_mean_face()
    frontal = project(mf, rotation(0.0, 0.0, 0.0), 100.0, (200.0, 200.0))
    turned = project(mf, rotation(0.0, 10.0, 0.0), 100.0, (200.0, 200.0))
    for blend, regressed in ((False, None), (True, (0.0, 20.0, 0.0))):
        f = Fit(frontal, regressed, [], 0.0, 0.0, None, frontal, turned)
        fit_labels([ImageLabel(f, [], 0, None)], mf, blend=blend)
        assert f.pose == pytest.approx((0.0, 10.0, 0.0), abs=0.05)
    # with neither, the label itself is fitted
    f = Fit(turned, None, [], 0.0, 0.0, None)
    fit_labels([ImageLabel(f, [], 0, None)], mf)
    assert f.pose == pytest.approx((0.0, 10.0, 0.0), abs=0.05)


def test_a_view_without_a_sample_counts_at_the_prior_distance():
    """Fusion step 4: a configured source that gave no valid sample in 4 views adds 4 samples at the
    prior distance t_d · face size to every point it may give. Teacher samples 1 px off the truth
    (±x, so the label is the truth); the missing source is 2D-style in a 3D-style PLTD, so only the
    51 inner points count it: RMS² there (4 · 1 + 4 · T²) / 8, on the jaw 1 px (values by hand)."""
    truth = face(2)
    size = face_size(truth)
    t = source([truth + [1, 0]] * 2 + [truth - [1, 0]] * 2, [False, False, True, True], reference=True)
    gone = SourceSamples(np.zeros((0, 68, 2)), np.zeros(0, bool), "2d", missing=4)
    t_d = 0.2
    seen = consensus([t, replace(gone, missing=0)], "3d", t_d)
    assert seen.fit_error == pytest.approx(1.0 / size)
    fit = consensus([t, gone], "3d", t_d)
    np.testing.assert_allclose(fit.landmarks, truth, atol=1e-9)
    inner = np.sqrt((4 * 1.0 + 4 * (t_d * size) ** 2) / 8)
    assert fit.fit_error == pytest.approx((17 * 1.0 + 51 * inner) / 68 / size)
    assert fit.reason is None and seen.fit_error < fit.fit_error < t_d


def test_the_jaw_comes_from_the_pltd_style_only_and_a_missing_style_is_a_reason():
    truth = face(1)
    jaw2d = truth.copy()
    jaw2d[:17] += [8, 0]  # the visible outline: 8 px from the 3D jaw
    t = source([truth] * 2 + [truth] * 2, [False, False, True, True], "3d")
    s = source([jaw2d] * 2 + [jaw2d] * 2, [False, False, True, True], "2d")
    three = consensus([t, s], "3d", t_d=0.2)
    two = consensus([t, s], "2d", t_d=0.2)
    assert three.landmarks[:17] == pytest.approx(truth[:17]) and two.landmarks[:17] == pytest.approx(jaw2d[:17])
    assert three.landmarks[17:] == pytest.approx(two.landmarks[17:])  # the inner points: both sources
    assert consensus([t], "2d", t_d=0.2).reason == "no_jaw_source"
    paper = restyle_jaw(Fit(truth.copy(), None, [0, 1], 0.0, 0.0, None), [truth, jaw2d], ["3d", "2d"], "2d")
    assert paper.landmarks[:17] == pytest.approx(jaw2d[:17])


def test_two_disagreeing_sources_give_a_large_expected_error_and_a_rejection():
    truth = face(2)
    size = face_size(truth)
    t = source([truth] * 4, [False, False, True, True])
    far = source([truth + [0.2 * size, 0]] * 4, [False, False, True, True])  # 20 % of the face apart
    near = source([truth + [0.01 * size, 0]] * 4, [False, False, True, True])
    bad, good = consensus([t, far], "3d", t_d=0.05), consensus([t, near], "3d", t_d=0.05)
    # equal weights: the label halfway; every sample 10 % (resp. 0.5 %) of the face from it on the inner
    # points, the jaw (3D-style sources: both) the same — expected error = that distance
    assert bad.reason == "fit_error_above_td" and bad.landmarks is None
    assert bad.fit_error == pytest.approx(0.1 * size / face_size(truth + [0.1 * size, 0]), rel=1e-6)
    assert good.reason is None and good.fit_error == pytest.approx(0.005, rel=1e-3)
    assert consensus([source([truth], [False])], "3d", t_d=0.05, min_samples=3).reason == "too_few_valid_samples"


def test_a_mirrored_view_brings_points_back_with_the_ibug_permutation():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:60, 100:110] = 255  # a bright square left of the face centre
    box = np.array([80.0, 40.0, 220.0, 180.0])
    views = make_views(image, box, 2, 128, seed=0, mirror=True)
    assert len(views) == 4 and [v.mirrored for v in views] == [False, False, True, True]
    direct, mirrored = views[0], views[2]
    assert np.array_equal(mirrored.image, direct.image[:, ::-1])
    pts = face(3)
    in_direct = direct.to_view(pts)
    # the same anatomical points seen in the mirror image: x flipped, left and right swapped
    in_mirror = np.column_stack([128 - in_direct[:, 0], in_direct[:, 1]])[MIRROR68]
    assert mirrored.to_source(in_mirror) == pytest.approx(pts)
    assert mirrored.to_view(pts) == pytest.approx(in_mirror)
    x0, _, x1, _ = direct.face
    assert mirrored.face[0] == pytest.approx(128 - x1) and mirrored.face[2] == pytest.approx(128 - x0)


def test_every_pose_source_gives_the_consensus_label_a_pose_and_blend_lies_between():
    """With the real default sources on the astronaut photo: `own`, `teacher`, `fit` and `blend` each
    give a pose; `fit` is the fit of the reference's points, and `blend` the rotation mean of the
    teacher's pose and the fit of the mirror-weighted points, so each angle lies between those two
    (consistency; fusion step 5)."""
    import skimage.data

    from pltd.stages.landmarks.geometry import fit_pose_batch
    from pltd.stages.landmarks.settings import LandmarkSettings
    from pltd.stages.landmarks.stage import Models, label_image

    poses, fits = {}, {}
    for mode in ("own", "teacher", "fit", "blend"):
        s = LandmarkSettings(pose_from=mode, mean_face="shipped")
        models = Models(s)
        fit, _ = label_image(skimage.data.astronaut(), np.array([175.0, 76.0, 265.0, 166.0]), "a", s, models)
        assert fit.reason is None and fit.pose is not None
        poses[mode], fits[mode] = np.array(fit.pose), fit
    mean_face = models.mean_face
    ref = fit_pose_batch(fits["fit"].reference_points[None], mean_face)[0][0]
    np.testing.assert_allclose(poses["fit"], ref, atol=1e-6)
    mirror_weighted = fit_pose_batch(fits["blend"].pose_points[None], mean_face)[0][0]
    low, high = np.minimum(poses["teacher"], mirror_weighted), np.maximum(poses["teacher"], mirror_weighted)
    assert np.all(poses["blend"] >= low - 0.05) and np.all(poses["blend"] <= high + 0.05)
    assert abs(poses["teacher"][1] - mirror_weighted[1]) > 1  # the two differ, so the check says something
