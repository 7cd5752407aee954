"""The run's own mean face from 300W-LP ground truth (the paper's L_3D) and the build hook that makes it.

Consistency tests: shapes projected from the shipped face at near-frontal poses give back the
shipped face; the landmarks stage's `before` hook writes RUN/landmarks/mean_face.json and points
the stage's settings at it, only when the manifest leaves `mean_face` null and has 300W-LP sources.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from rich.console import Console

from pltd.pipeline import storage
from pltd.pipeline.build import sources_of
from pltd.pipeline.catalog import Landmarks
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.stage import BuildContext
from pltd.pose import project, rotation
from pltd.schemas import INGEST
from pltd.stages.landmarks.mean_face import from_ground_truth, load_mean_face


def shapes(n: int, max_angle: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    face = load_mean_face()
    out = []
    for _ in range(n):
        pose = rng.uniform(-max_angle, max_angle, 3)
        pts = project(face, rotation(*pose), rng.uniform(80, 120), rng.uniform(100, 200, 2))
        out.append((pts.reshape(-1).tolist(), pose.tolist()))
    return out


def test_from_ground_truth_keeps_the_frame_and_needs_enough_shapes():
    assert from_ground_truth(shapes(4, 5.0)) is None
    points, prov = from_ground_truth(shapes(40, 5.0) + shapes(40, 60.0, seed=1))
    assert prov["shapes"] >= 40  # the 40 near-frontal ones, and any of the others within 10°
    assert np.abs(points[:, :2] - load_mean_face()[:, :2]).max() < 0.03  # symmetric poses average out
    assert np.allclose(points[:, 2], load_mean_face()[:, 2], atol=0.05)


def _context(tmp_path, mean_face=None) -> BuildContext:
    root = tmp_path / "lp"
    root.mkdir(parents=True, exist_ok=True)
    m = Manifest.model_validate(
        {"name": "t", "sources": [{"name": "lp", "format": "300w_lp", "root": str(root)}],
         "landmarks": {"mean_face": mean_face}}
    )  # fmt: skip
    ctx = BuildContext(m, RunLayout(str(tmp_path / "run")), Console(quiet=True), sources_of(m))
    rows = [
        {"image_id": f"i{k}", "source": "lp", "source_label": "b", "source_path": "x.jpg", "width": 450,
         "height": 450, "landmarks_gt": lm, "pose_gt": pose}
        for k, (lm, pose) in enumerate(shapes(30, 8.0))
    ]  # fmt: skip
    storage.write_parquet(ctx.layout.output("ingest", "lp", 0), pa.Table.from_pylist(rows, schema=INGEST))
    return ctx


def test_the_landmarks_stage_makes_the_run_mean_face(tmp_path):
    ctx = _context(tmp_path)
    Landmarks().before(ctx)
    path = ctx.layout.stage_file("landmarks", "mean_face.json")
    assert ctx.manifest.landmarks.mean_face == path
    assert load_mean_face(path).shape == (68, 3)
    shipped = _context(tmp_path / "s", mean_face="shipped")
    Landmarks().before(shipped)
    assert shipped.manifest.landmarks.mean_face == "shipped"
