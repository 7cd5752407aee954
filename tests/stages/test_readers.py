"""Each reader against files written in the real formats; one row out per image in."""

from __future__ import annotations

import math

import fsspec
import numpy as np
import pytest
import scipy.io

from pltd.stages.ingest import ingest_partition
from pltd.stages.readers.base import PLAN, PlanStats, Source, SourceError, get_reader
from pltd.stages.readers.rows import IngestSettings
from pltd.stages.recordio import RecordWriter, pack
from tests.helpers import jpeg_bytes

SETTINGS = IngestSettings()


def source(fmt: str, root, **options) -> Source:
    reader = get_reader(fmt)
    return Source("src", fmt, str(root), type(reader).Options(**options))


def plan_and_read(src: Source):
    stats = PlanStats()
    items = list(get_reader(src.format).plan_items(src, stats))
    import pyarrow as pa

    plan = pa.Table.from_pylist([{**it, "part": 0} for it in items], schema=PLAN)
    accepted, rejected = ingest_partition(src, plan, SETTINGS)
    return stats, accepted.to_pylist(), rejected.to_pylist()


def test_vggface2_labels_boxes_and_bad_files(tmp_path):
    for cls in ("n000001", "n000002"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for k in range(2):
            (tmp_path / "train" / cls / f"{k:04d}_01.jpg").write_bytes(jpeg_bytes((80, 100), seed=k))
    (tmp_path / "train" / "n000002" / "0009_01.jpg").write_bytes(b"")
    (tmp_path / "train" / "n000002" / "notes.txt").write_text("x")
    (tmp_path / "train" / "stray.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "bb.csv").write_text("NAME_ID,X,Y,W,H\nn000001/0000_01,10,20,30,40\n")
    src = source("vggface2", tmp_path / "train", boxes=str(tmp_path / "bb.csv"))
    stats, acc, rej = plan_and_read(src)
    assert stats.ignored == {"not_an_image_extension": 1, "not_in_a_class_folder": 1}
    assert len(acc) == 4 and [r["reason"] for r in rej] == ["empty_file"]
    first = acc[0]
    assert first["source_label"] == "n000001" and first["bbox"] == [10, 20, 40, 60]
    assert (first["width"], first["height"], first["format"]) == (80, 100, "JPEG")
    assert acc[1]["bbox"] is None  # no box in the CSV for it
    assert len({r["image_id"] for r in acc + rej}) == 5


def test_vggface2_missing_boxes_file_stops_at_start(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(SourceError, match="nope.csv"):
        get_reader("vggface2").check(source("vggface2", tmp_path / "train", boxes=str(tmp_path / "nope.csv")))


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(SourceError, match=str(tmp_path / "absent")):
        get_reader("image_folder").check(source("image_folder", tmp_path / "absent"))


@pytest.mark.parametrize(("identity", "labels"), [("folder", ["alice", "bob", None]), ("none", [None, None, None])])
def test_image_folder_identity_modes(tmp_path, identity, labels):
    for rel in ("alice/a.png", "bob/sub/b.jpg", "c.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(jpeg_bytes())
    _, acc, rej = plan_and_read(source("image_folder", tmp_path, identity=identity))
    assert [r["source_label"] for r in acc] == labels and not rej


def test_image_folder_on_an_fsspec_url():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/faces/p1/x.jpg": jpeg_bytes(seed=1), "/faces/p2/y.jpg": jpeg_bytes(seed=2)})
    _, acc, _ = plan_and_read(source("image_folder", "memory://faces"))
    assert [r["source_label"] for r in acc] == ["p1", "p2"]
    assert acc[0]["source_path"] == "memory://faces/p1/x.jpg"


def write_insightface(root, labels: list[int], payloads: dict[int, bytes] | None = None) -> int:
    """An insightface train.rec/.idx: header record 0, images 1..n-1, identity records n..m-1."""
    root.mkdir(parents=True, exist_ok=True)
    n = len(labels) + 1
    ids = sorted(set(labels))
    with open(root / "train.rec", "wb") as rec, open(root / "train.idx", "wb") as idx:
        w = RecordWriter(rec, idx)
        w.write(0, pack([n, n + len(ids)], b""))
        for key, label in enumerate(labels, 1):
            w.write(key, pack(float(label), (payloads or {}).get(key, jpeg_bytes(seed=key))))
        for j, label in enumerate(ids):
            keys = [k for k, lab in enumerate(labels, 1) if lab == label]
            w.write(n + j, pack([keys[0], keys[-1] + 1], b""))
    return n


def test_insightface_rec_reads_images_and_skips_header_records(tmp_path):
    write_insightface(tmp_path, [0, 0, 1, 1, 1], payloads={4: b"not a jpeg at all"})
    stats, acc, rej = plan_and_read(source("insightface_rec", tmp_path))
    assert stats.ignored == {"rec_header_or_identity_record": 3}
    assert [r["source_label"] for r in acc] == ["0", "0", "1", "1"]
    assert [r["record_index"] for r in acc] == [1, 2, 3, 5]
    assert rej[0]["reason"] == "not_an_image" and rej[0]["record_index"] == 4


def test_insightface_truncated_record_and_offset_past_eof(tmp_path):
    write_insightface(tmp_path, [0, 0, 1])
    idx = (tmp_path / "train.idx").read_text().splitlines()
    offsets = {int(k): int(v) for k, v in (line.split("\t") for line in idx)}
    rec = (tmp_path / "train.rec").read_bytes()
    (tmp_path / "train.rec").write_bytes(rec[: offsets[3] + 40])  # record 3 cut, identity records gone
    idx[2] = f"2\t{len(rec) * 10}"  # record 2's offset points far past the end of the file
    (tmp_path / "train.idx").write_text("\n".join(idx) + "\n")
    _, acc, rej = plan_and_read(source("insightface_rec", tmp_path))
    assert [r["record_index"] for r in acc] == [1]
    assert {r["record_index"]: r["reason"] for r in rej} == {2: "offset_past_eof", 3: "truncated_record"}


def test_insightface_duplicate_idx_keys_stop_at_start(tmp_path):
    write_insightface(tmp_path, [0, 1])
    (tmp_path / "train.idx").write_text("0\t0\n1\t28\n1\t64\n")
    with pytest.raises(SourceError, match="key 1 appears 2 times"):
        list(get_reader("insightface_rec").plan_items(source("insightface_rec", tmp_path), PlanStats()))


def test_insightface_missing_idx_stops_at_start(tmp_path):
    tmp_path.joinpath("train.rec").write_bytes(b"")
    with pytest.raises(SourceError, match="train.idx"):
        get_reader("insightface_rec").check(source("insightface_rec", tmp_path))


def write_mat_image(folder, stem, mat: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.jpg").write_bytes(jpeg_bytes((120, 120), seed=len(stem)))
    if mat is not None:
        scipy.io.savemat(folder / f"{stem}.mat", mat)


POINTS = np.stack([np.linspace(10, 100, 68), np.linspace(20, 110, 68)])  # 2 x 68


def test_300w_lp_pose_degrees_landmarks_and_base_photo(tmp_path):
    pose = np.array([[0.1, -0.5, 0.25, 1, 2, 3, 0.001]])  # pitch, yaw, roll (radians), t, s
    write_mat_image(tmp_path / "AFW", "AFW_134212_1_0", {"pt2d": POINTS, "Pose_Para": pose})
    write_mat_image(tmp_path / "AFW_Flip", "AFW_134212_1_3", {"pt2d": POINTS, "Pose_Para": pose})
    write_mat_image(tmp_path / "HELEN", "HELEN_1_2", {"pt2d": POINTS})
    write_mat_image(tmp_path / "IBUG", "IBUG_image_003_1_0", None)
    write_mat_image(tmp_path / "landmarks" / "AFW", "AFW_134212_1_0_pts", {"pts_2d": POINTS.T})
    stats, acc, rej = plan_and_read(source("300w_lp", tmp_path))
    assert stats.ignored == {"landmarks_folder": 1}
    assert [r["base_id"] for r in acc] == ["AFW_134212_1", "AFW_134212_1"]
    yaw, pitch, roll = acc[0]["pose_gt"]
    assert math.isclose(yaw, math.degrees(-0.5), rel_tol=1e-6)
    assert math.isclose(pitch, math.degrees(0.1), rel_tol=1e-6)
    assert math.isclose(roll, math.degrees(0.25), rel_tol=1e-6)
    assert acc[0]["landmarks_gt"][:4] == pytest.approx([10, 20, POINTS[0, 1], POINTS[1, 1]])
    assert acc[0]["bbox"] == pytest.approx([10, 20, 100, 110])
    reasons = {r["source_path"].rsplit("/", 1)[1]: (r["reason"], r["detail"]) for r in rej}
    assert reasons["HELEN_1_2.jpg"] == ("annotation_missing_field", "missing Pose_Para")
    assert reasons["IBUG_image_003_1_0.jpg"][0] == "annotation_missing"


def test_300w_lp_reads_the_3d_style_ground_truth_and_mirrors_it_for_flips(tmp_path):
    """300W-LP ships 3D-style points as `landmarks/<SUBSET>/<stem>_pts.mat` (`pts_3d`, 68 × 2) for the
    unflipped renders only (layout as read by Chenxu-nmsu/Face_AI_Application
    `02_face_landmarks/read_300wlp_data.py`); a _Flip render's are its twin's, mirrored (consistency)."""
    pose = np.zeros((1, 7))
    jaw3d = POINTS.T.copy()
    jaw3d[:17, 0] += 5.0  # the 3D jaw: 5 px off the outline
    write_mat_image(tmp_path / "AFW", "AFW_134212_1_0", {"pt2d": POINTS, "Pose_Para": pose})
    write_mat_image(tmp_path / "AFW_Flip", "AFW_134212_1_0", {"pt2d": POINTS, "Pose_Para": pose})
    write_mat_image(tmp_path / "landmarks" / "AFW", "AFW_134212_1_0_pts", {"pts_2d": POINTS.T, "pts_3d": jaw3d})
    _, acc, rej = plan_and_read(source("300w_lp", tmp_path))
    assert not rej
    by_folder = {r["source_path"].split("/")[-2]: r for r in acc}
    direct, flipped = by_folder["AFW"], by_folder["AFW_Flip"]
    assert direct["landmarks_gt_style"] == flipped["landmarks_gt_style"] == "2d"
    assert np.reshape(direct["landmarks_gt_other"], (68, 2)) == pytest.approx(jaw3d)
    from pltd.stages.landmarks.ibug import MIRROR68

    mirrored = np.column_stack([120 - jaw3d[:, 0], jaw3d[:, 1]])[MIRROR68]  # the images are 120 px wide
    assert np.reshape(flipped["landmarks_gt_other"], (68, 2)) == pytest.approx(mirrored)


def test_aflw2000_uses_pt3d_68_not_the_21_point_pt2d(tmp_path):
    pts3d = np.vstack([POINTS, np.zeros((1, 68))])
    mat = {"pt3d_68": pts3d, "pt2d": np.zeros((2, 21)), "Pose_Para": np.zeros((1, 7))}
    write_mat_image(tmp_path, "image00002", mat)
    _, acc, rej = plan_and_read(source("aflw2000", tmp_path))
    assert not rej and len(acc[0]["landmarks_gt"]) == 136 and acc[0]["base_id"] is None
    assert acc[0]["landmarks_gt_style"] == "3d" and acc[0]["landmarks_gt_other"] is None
    assert acc[0]["landmarks_gt"][-2:] == pytest.approx([100, 110])


def test_damaged_mat_is_rejected_not_fatal(tmp_path):
    write_mat_image(tmp_path / "LFPW", "LFPW_image_train_0001_0", {"pt2d": POINTS, "Pose_Para": np.zeros((1, 7))})
    (tmp_path / "LFPW" / "LFPW_image_train_0001_0.mat").write_bytes(b"MATLAB 5.0 garbage")
    _, acc, rej = plan_and_read(source("300w_lp", tmp_path))
    assert not acc and rej[0]["reason"] == "annotation_unreadable"
