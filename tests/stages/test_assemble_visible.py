"""The PLTD's `visible` column: written by assemble, read and flipped by the reader.

Consistency tests (pltd vs pltd): the column is `self_occlusion` of the row's pose; the reader's
flip reorders it with MIRROR68, which must equal the self-occlusion of the mirrored pose. The
expected sides come from the pose convention's documented formula (README "Pose sign convention":
yaw > 0 turns the nose to the image's left, so the image-left jaw points 0–7 turn away).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pltd.pose import mirror, project, rotation
from pltd.schemas import INGEST, LANDMARKS, PLTD
from pltd.stages.assemble import AssembleSettings, assemble_partition
from pltd.stages.landmarks.ibug import MIRROR68
from pltd.stages.landmarks.mean_face import load_mean_face
from pltd.stages.landmarks.visibility import self_occlusion
from pltd.trainer.data import Augment, PLTDDataset

LEFT_JAW, RIGHT_JAW = np.arange(0, 8), np.arange(9, 17)


def assembled(tmp_path, poses: list[tuple[float, float, float]]) -> pa.Table:
    """PLTD rows for one grey 640×480 photo per pose, labelled with the mean face projected at it."""
    ingest, labels = [], []
    for k, pose in enumerate(poses):
        path = tmp_path / f"{k}.png"
        Image.fromarray(np.full((480, 640, 3), 90, np.uint8)).save(path)
        face = project(load_mean_face(), rotation(*pose), 100.0, np.array([320.0, 240.0]))
        ingest.append({"image_id": f"i{k}", "source": "t", "source_label": "p", "source_path": str(path),
                       "width": 640, "height": 480})  # fmt: skip
        labels.append({"image_id": f"i{k}", "source": "t", "label_kind": "pseudo",
                       "landmarks": face.reshape(-1).tolist(), "pose": list(pose), "n_samples": 3,
                       "fit_error": 0.01, "eye_closed": [0.1, 0.1]})  # fmt: skip
    out, rej, _ = assemble_partition(
        pa.Table.from_pylist(ingest, schema=INGEST),
        pa.Table.from_pylist(labels, schema=LANDMARKS),
        None,
        {("t", "p"): 0},
        AssembleSettings(),
    )
    assert rej.num_rows == 0 and out.schema.equals(PLTD)
    return out


def test_assemble_writes_the_back_face_test_of_the_rows_pose(tmp_path):
    out = assembled(tmp_path, [(60.0, 0.0, 0.0), (-60.0, 0.0, 0.0), (0.0, 0.0, 0.0)])
    vis = np.array(out.column("visible").to_pylist())
    assert vis.shape == (3, 68) and out.column("visible").null_count == 0
    assert not vis[0, LEFT_JAW].any() and vis[0, RIGHT_JAW].all()  # yaw +60°: the image-left jaw hides
    assert not vis[1, RIGHT_JAW].any() and vis[1, LEFT_JAW].all()
    assert vis[2].all()  # frontal: every point faces the camera
    assert np.array_equal(vis, self_occlusion(np.array([[60, 0, 0], [-60, 0, 0], [0, 0, 0]], float)))


def test_visible_survives_parquet_and_the_readers_flip_moves_the_hidden_side(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(assembled(tmp_path, [(60.0, 0.0, 0.0)]), path)
    back = pq.read_table(path)
    assert back.schema.field("visible").type == pa.list_(pa.bool_()) and len(back.column("visible")[0]) == 68
    kept = next(iter(PLTDDataset([str(path)], Augment(flip=0.0), shuffle=False)))["visible"]
    flipped = next(iter(PLTDDataset([str(path)], Augment(flip=1.0), shuffle=False)))["visible"]
    assert kept.dtype.is_floating_point and kept.shape == (68,)
    assert (kept[LEFT_JAW] == 0).all() and (kept[RIGHT_JAW] == 1).all()
    assert (flipped[RIGHT_JAW] == 0).all() and (flipped[LEFT_JAW] == 1).all()
    # the mirrored column is the self-occlusion of the mirrored pose (the mean face is symmetric)
    assert np.array_equal(flipped.numpy().astype(bool), self_occlusion(mirror(np.array([60.0, 0.0, 0.0]))))
    assert np.array_equal(flipped.numpy(), kept.numpy()[MIRROR68])


def test_a_pltd_without_the_column_reads_as_before(tmp_path):
    """Schema-1 shards (no `visible`) give samples without the key."""
    path = tmp_path / "old.parquet"
    pq.write_table(assembled(tmp_path, [(10.0, 0.0, 0.0)]).drop_columns(["visible"]), path)
    sample = next(iter(PLTDDataset([str(path)], Augment(flip=0.0), shuffle=False)))
    assert "visible" not in sample and sample["pose"].shape == (3,)


def test_null_visible_reads_as_nan(tmp_path):
    """A row without the column's value (another writer) reads as NaN, not as a guess."""
    table = assembled(tmp_path, [(60.0, 0.0, 0.0), (0.0, 0.0, 0.0)])
    table = table.set_column(
        table.schema.get_field_index("visible"), "visible", pa.array([None, [True] * 68], pa.list_(pa.bool_()))
    )
    path = tmp_path / "nulls.parquet"
    pq.write_table(table, path)
    got = {s["image_id"]: s["visible"] for s in PLTDDataset([str(path)], Augment(flip=0.0), shuffle=False)}
    assert np.isnan(got["i0"].numpy()).all() and (got["i1"] == 1).all()
