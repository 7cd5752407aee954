"""Batched FaceMesh (`facemesh.py`) against MediaPipe's own FaceMesh graph.

Conformance: the graph (mediapipe 0.10.21's `face_landmark_front_cpu`, the one `mp.solutions.face_mesh`
runs) is the reference; it is asked for the region it chose (`face_rects_from_detections`) and pltd's
crop + network + projection runs on that same region: mean point distance ≤ 0.5 px at 192² on the
sample's faces (measured ≈ 1e-5 px: the same network, the same crop). Consistency: batched equals
one view at a time, and the known-box region (no re-detection) lands near the graph's points.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pltd.stages.landmarks import facemesh
from pltd.stages.landmarks.geometry import face_size
from pltd.stages.landmarks.mesh_map import load_index_map
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views


@pytest.fixture(scope="module")
def views(sample_dir):
    out = []
    for f in sorted((sample_dir / "300w_lp" / "HELEN").glob("*.jpg"))[:6]:
        img = np.asarray(Image.open(f).convert("RGB"))
        pt = scipy.io.loadmat(f.with_suffix(".mat"))["pt2d"].T
        out += make_views(img, np.r_[pt.min(axis=0), pt.max(axis=0)], 4, 256, seed=0)
    return out


@pytest.fixture(scope="module")
def graph():
    from mediapipe.python.solution_base import SolutionBase
    from mediapipe.python.solutions import face_mesh

    return SolutionBase(
        binary_graph_path=face_mesh._BINARYPB_FILE_PATH,
        side_inputs={"num_faces": 1, "with_attention": False, "use_prev_landmarks": False},
        outputs=["multi_face_landmarks", "face_rects_from_detections"],
    )


def test_same_region_same_points_as_the_graph(views, graph):
    net = facemesh.MeshNetwork()
    checked = 0
    for v in views:
        res = graph.process(v.image)
        assert res.multi_face_landmarks, "the graph finds every sample face"
        s = v.image.shape[0]  # square views: the graph's normalised rect is in pixels × s
        ref = np.array([(p.x * s, p.y * s, p.z * s) for p in res.multi_face_landmarks[0].landmark])
        r = res.face_rects_from_detections[0]
        roi = np.array([r.x_center * s, r.y_center * s, r.width * s, r.rotation])
        mesh, prob = net.meshes([v.image], roi[None])
        dist_192 = np.linalg.norm(mesh[0, :, :2] - ref[:, :2], axis=1).mean() * facemesh.SIZE / roi[2]
        assert dist_192 <= 0.5, dist_192
        assert np.abs(mesh[0, :, 2] - ref[:, 2]).mean() * facemesh.SIZE / roi[2] <= 0.5
        assert prob[0] > 0.5
        checked += 1
    assert checked == len(views) == 24


def test_batched_equals_one_view_at_a_time(views):
    net = facemesh.MeshNetwork()
    rois = np.stack([facemesh.roi_from_box(v.face) for v in views])
    batched, _ = net.meshes([v.image for v in views], rois)
    single = np.concatenate([net.meshes([v.image], r[None])[0] for v, r in zip(views, rois, strict=True)])
    assert np.abs(batched - single).max() < 1e-2


def test_known_box_region_lands_near_the_graph(views):
    idx = load_index_map()
    ref = create_source("mediapipe_graph", mean_face=None, index_map=idx)(views)
    got = create_source("mediapipe", mean_face=None, index_map=idx)(views)
    assert all(g is not None for g in got)
    d = [
        np.linalg.norm(g.landmarks - r.landmarks, axis=1).mean() / face_size(r.landmarks)
        for g, r in zip(got, ref, strict=True)
    ]
    assert np.median(d) < 0.03 and max(d) < 0.1, d  # measured on 192 sample views: median 0.0125, p90 0.024


def test_region_from_mesh_is_level_for_a_level_face():
    mesh = np.zeros((468, 3))
    mesh[:, :2] = np.random.default_rng(0).uniform(50, 150, (468, 2))
    mesh[33, :2], mesh[263, :2] = (80, 100), (120, 100)
    _, _, side, rot = facemesh.roi_from_mesh(mesh)
    assert rot == pytest.approx(0.0, abs=1e-9) and side == pytest.approx(1.5 * np.ptp(mesh[:, :2], axis=0).max())
    mesh[263, :2] = (120, 140)  # right eye corner lower on screen: the face is rolled clockwise
    assert facemesh.roi_from_mesh(mesh)[3] == pytest.approx(np.arctan2(40, 40))
