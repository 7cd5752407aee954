"""assemble: the stored JPEG and its landmarks agree; the mirror permutation; shard planning."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from pltd.pipeline.shards import shard_plan
from pltd.pose import project, rotation
from pltd.schemas import INGEST, LANDMARKS, PLTD
from pltd.stages.assemble import AssembleSettings, assemble_partition
from pltd.stages.landmarks.geometry import fit_pose
from pltd.stages.landmarks.ibug import MIRROR68, mirror_landmarks
from pltd.stages.landmarks.mean_face import load_mean_face


def dotted_image(tmp_path, pts: np.ndarray, size=(640, 480)) -> str:
    """A dark image with a bright 5x5 dot centred on each point (pixel centres at k + 0.5)."""
    img = np.full((size[1], size[0], 3), 20, np.uint8)
    for x, y in pts:
        cx, cy = int(x), int(y)
        img[cy - 2 : cy + 3, cx - 2 : cx + 3] = 250
    path = tmp_path / "dots.png"
    Image.fromarray(img).save(path)
    return str(path)


def test_landmarks_land_on_the_same_points_in_the_stored_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    face = project(load_mean_face(), rotation(15, -5, 8), 110.0, np.array([330.0, 250.0]))
    face = np.floor(face + rng.uniform(-3, 3, face.shape)) + 0.5  # dot centres
    gaps = np.linalg.norm(face[:, None] - face[None], axis=2) + np.eye(68) * 1e9
    keep = np.flatnonzero(gaps.min(axis=1) >= 16)  # points whose dots stay apart after shrinking
    assert len(keep) >= 10
    path = dotted_image(tmp_path, face)
    ingest = pa.Table.from_pylist(
        [{"image_id": "a", "source": "t", "source_label": "p", "source_path": path, "width": 640, "height": 480}],
        schema=INGEST,
    )
    labels = pa.Table.from_pylist(
        [{"image_id": "a", "source": "t", "label_kind": "pseudo", "landmarks": face.reshape(-1).tolist(),
          "pose": [15, -5, 8], "n_samples": 3, "fit_error": 0.01, "eye_closed": [0.1, 0.2]}],
        schema=LANDMARKS,
    )  # fmt: skip
    out, rej, n = assemble_partition(ingest, labels, None, {("t", "p"): 7}, AssembleSettings(region_long_side=256))
    assert n == 1 and rej.num_rows == 0 and out.schema.equals(PLTD)
    row = out.to_pylist()[0]
    stored = np.asarray(Image.open(io.BytesIO(row["image"])).convert("L"), float)
    assert (row["width"], row["height"]) == (stored.shape[1], stored.shape[0]) and max(stored.shape) == 256
    pts = np.asarray(row["landmarks"]).reshape(68, 2)
    for x, y in pts[keep]:  # brightness-weighted centre of the dot around the stored point
        x0, y0 = int(x) - 4, int(y) - 4
        win = stored[y0 : y0 + 9, x0 : x0 + 9]
        w = np.clip(win - 60, 0, None)
        yy, xx = np.mgrid[0:9, 0:9]
        cx, cy = (w * xx).sum() / w.sum() + x0 + 0.5, (w * yy).sum() / w.sum() + y0 + 0.5
        assert abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0
    assert row["face_id"] == 7 and row["bbox"] == [*pts.min(0).tolist(), *pts.max(0).tolist()]


def symmetric_face() -> np.ndarray:
    f = load_mean_face()
    mirrored = f[MIRROR68] * [-1, 1, 1]
    return (f + mirrored) / 2


def test_mirror_permutation_is_an_involution_and_mirrors_a_face():
    assert np.array_equal(MIRROR68[MIRROR68], np.arange(68))
    face = symmetric_face()
    t = np.array([200.0, 200.0])
    seen = project(face, rotation(25, 10, 12), 80.0, t)
    flipped = mirror_landmarks(seen, width=400.0)
    assert np.allclose(flipped, project(face, rotation(-25, 10, -12), 80.0, t), atol=1e-6)


def test_flipped_landmarks_fit_to_negated_yaw_and_roll():
    face = symmetric_face()
    seen = project(face, rotation(30, -12, 9), 90.0, np.array([150.0, 160.0]))
    (y, p, r), *_ = fit_pose(mirror_landmarks(seen, 300.0), face)
    assert abs(y + 30) < 0.5 and abs(p + 12) < 0.5 and abs(r + 9) < 0.5


def test_shard_plan_cuts_by_rows_and_bytes_in_order():
    files = [("a", 25, 2500), ("b", 10, 1000), ("c", 40, 4000)]
    by_rows = shard_plan(files, rows_per_shard=30, bytes_per_shard=None)
    assert [sum(b - a for _, a, b in s) for s in by_rows] == [30, 30, 15]
    assert by_rows[0] == [("a", 0, 25), ("b", 0, 5)] and by_rows[1][0] == ("b", 5, 10)
    by_bytes = shard_plan(files, rows_per_shard=1000, bytes_per_shard=2000)
    assert [sum(b - a for _, a, b in s) for s in by_bytes] == [20, 20, 20, 15]
