"""Real landmark sources on a real face; torch backends with random weights for plumbing only."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import skimage.data
import torch

from pltd.checkpoints import CheckpointError, load_model
from pltd.schemas import INGEST
from pltd.stages.landmarks.algorithm import fill_fitted_poses
from pltd.stages.landmarks.geometry import face_size
from pltd.stages.landmarks.mean_face import load_mean_face
from pltd.stages.landmarks.mesh_map import load_index_map
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views
from tests.helpers import tiny_checkpoint

ASTRONAUT_BOX = np.array([175.0, 76.0, 265.0, 166.0])  # dlib's detection on skimage's astronaut


@pytest.fixture(scope="module")
def views():
    return make_views(skimage.data.astronaut(), ASTRONAUT_BOX, 4, 256, seed=3)


def test_dlib_and_mediapipe_agree_on_a_real_face(views):
    mean_face = load_mean_face()
    dlib = create_source("dlib68", mean_face=mean_face)(views)
    mesh = create_source("mediapipe", mean_face=mean_face, index_map=load_index_map())(views)
    assert all(s is not None for s in dlib + mesh)
    for a, b in zip(dlib, mesh, strict=True):
        gap = np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean() / face_size(a.landmarks)
        assert gap < 0.06  # two independent models, one index map: close on a frontal face
        assert a.pose is None and b.pose is None  # fitted sources: the stage fits the poses it needs, batched
    (pa_, pb) = fill_fitted_poses([dlib[0], mesh[0]], mean_face)
    pa_, pb = pa_.pose, pb.pose
    assert abs(pa_[0]) < 15 and abs(pb[0]) < 15 and abs(pa_[2] - pb[2]) < 5
    assert all(b.mesh.shape == (468, 3) for b in mesh)


def test_resnet_teacher_batched_equals_one_view_at_a_time(tmp_path, views):
    teacher = create_source("resnet50", checkpoint=str(tiny_checkpoint(tmp_path / "t.pt")))
    batched = teacher(views)
    single = [teacher([v])[0] for v in views]
    for a, b in zip(batched, single, strict=True):
        assert a.landmarks.shape == (68, 2) and np.allclose(a.landmarks, b.landmarks, atol=1e-3)
        assert np.allclose(a.pose, b.pose, atol=1e-3)


def test_label_partition_with_a_random_weight_teacher_accounts_for_every_row(tmp_path):
    import io

    from PIL import Image

    from pltd.stages.landmarks.stage import LandmarkSettings, label_partition

    path = tmp_path / "face.jpg"
    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())
    rows = [
        {"image_id": f"a{i}", "source": "t", "source_path": str(path), "width": 512, "height": 512,
         "bbox": list(ASTRONAUT_BOX)}
        for i in range(3)
    ]  # fmt: skip
    rows.append({"image_id": "gone", "source": "t", "source_path": str(tmp_path / "missing.jpg")})
    table = pa.Table.from_pylist(rows, schema=INGEST)
    settings = LandmarkSettings(teacher="resnet50", teacher_checkpoint=str(tiny_checkpoint(tmp_path / "t.pt")), views=4)
    acc, rej = label_partition(table, settings)
    assert acc.num_rows + rej.num_rows == 4
    reasons = dict(zip(rej.column("image_id").to_pylist(), rej.column("reason").to_pylist(), strict=True))
    assert reasons["gone"] == "unreadable_file"
    # random weights: whatever the teacher says, MediaPipe's samples alone can carry an image
    for r in acc.to_pylist():
        assert r["n_samples"] == 3 and r["n_second"] >= 1


def test_missing_or_foreign_checkpoints_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "nope.pt")):
        load_model(tmp_path / "nope.pt", "landmarks_pose", "landmarks.teacher_checkpoint")
    blink = tiny_checkpoint(tmp_path / "blink.pt", task="blink", outputs=1, size=64)
    with pytest.raises(CheckpointError, match="trained for task 'blink'"):
        load_model(blink, "landmarks_pose", "landmarks.teacher_checkpoint")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    torch.save({"format": "pltd-checkpoint-1", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_model(tmp_path / "evil.pt", "landmarks_pose", "x")


def test_resnet_blink_outputs_probabilities(tmp_path, views):
    from pltd.stages.landmarks.blink import ResNetBlink, eye_crops

    blink = ResNetBlink(str(tiny_checkpoint(tmp_path / "b.pt", task="blink", outputs=1, size=64)))
    lm = create_source("dlib68", mean_face=None)(views[:1])[0].landmarks
    crops = eye_crops(views[0].image, lm, 64)
    probs = blink(crops)
    assert len(crops) == 2 and crops[0].shape == (64, 64, 3) and probs.shape == (2,)
    assert np.all((probs >= 0) & (probs <= 1))
