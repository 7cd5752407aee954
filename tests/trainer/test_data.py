"""The PLTD reader: exact coverage across ranks x workers, crops, flips, and interop readers."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pltd.schemas import PLTD
from pltd.trainer.data import Augment, PLTDDataset, crop_sample, flip_sample


def synthetic_shards(tmp_path, n_shards=3, rows=50, group=7) -> list[str]:
    rng = np.random.default_rng(0)
    paths, k = [], 0
    for s in range(n_shards):
        recs = []
        for _ in range(rows):
            img = rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG")
            pts = rng.uniform(20, 60, (68, 2))
            recs.append({"image_id": f"r{k}", "source": "syn", "source_label": "x", "face_id": k % 9, "image": buf.getvalue(),
                         "width": 80, "height": 96, "bbox": [*pts.min(0), *pts.max(0)], "landmarks": pts.ravel().tolist(),
                         "pose": [10.0, 5.0, -3.0], "label_kind": "pseudo", "n_samples": 3, "fit_error": 0.01,
                         "eye_closed": [0.0, 0.0], "source_path": "x"})  # fmt: skip
            k += 1
        path = tmp_path / f"part-{s:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(recs, schema=PLTD), path, row_group_size=group)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 2), (3, 1)])
def test_every_rank_and_worker_reads_each_row_once_per_epoch(tmp_path, world, workers):
    shards = synthetic_shards(tmp_path)
    seen_epochs = []
    for epoch in (0, 1):
        seen = []
        for rank in range(world):
            ds = PLTDDataset(shards, Augment(input_size=32), buffer_size=16, seed=3, rank=rank, world_size=world)
            ds.set_epoch(epoch)
            for batch in DataLoader(ds, batch_size=8, num_workers=workers):
                seen += batch["image_id"]
        assert len(seen) == 150 and len(set(seen)) == 150
        seen_epochs.append(seen)
    assert seen_epochs[0] != seen_epochs[1]  # reshuffled between epochs


def bright_centre(img: np.ndarray) -> tuple[float, float]:
    w = np.clip(img[..., 0].astype(float) - 60, 0, None)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return (w * xx).sum() / w.sum() + 0.5, (w * yy).sum() / w.sum() + 0.5


def test_crop_keeps_landmarks_on_the_image_content():
    """A bright dot at a landmark stays under that landmark after crop, resize (and flip)."""
    img = np.zeros((200, 180, 3), np.uint8)
    pts = np.tile([[90.0, 100.0]], (68, 1))
    pts[1] = [60.5, 70.5]
    img[68:73, 58:63] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    import random

    for seed in range(10):
        out, p, box = crop_sample(
            buf.getvalue(), pts, np.array([40.0, 50.0, 140.0, 150.0]), random.Random(seed), Augment(input_size=112)
        )
        x, y = bright_centre(out)
        assert abs(x - p[1, 0]) <= 1.0 and abs(y - p[1, 1]) <= 1.0
        f_img, f_pts, f_box, pose = flip_sample(out, p, box, np.array([20.0, 5.0, -7.0], np.float32))
        x, y = bright_centre(f_img)
        assert abs(x - f_pts[15, 0]) <= 1.0 and abs(y - f_pts[15, 1]) <= 1.0  # point 1 is point 15 in a mirror
        assert pose.tolist() == [-20.0, 5.0, 7.0] and f_box[0] < f_box[2]


def test_sample_tensors(tmp_path):
    ds = PLTDDataset(synthetic_shards(tmp_path, 1, 10), Augment(input_size=112), shuffle=False)
    s = next(iter(ds))
    assert s["image"].shape == (3, 112, 112) and s["image"].dtype == torch.float32
    assert s["image"].min() >= -1.0 and s["image"].max() <= 1.0
    assert s["landmarks"].shape == (68, 2) and s["pose"].shape == (3,) and s["face_id"].dtype == torch.int64
    assert len(ds) == 10


def test_steps_every_rank_can_take_bounds_each_rank(tmp_path):
    shards = synthetic_shards(tmp_path, n_shards=3, rows=50, group=7)  # uneven row groups
    for world, workers, batch in ((2, 2, 4), (3, 1, 8)):
        counts = []
        for rank in range(world):
            ds = PLTDDataset(shards, Augment(input_size=16), seed=1, rank=rank, world_size=world)
            n = sum(1 for _ in DataLoader(ds, batch_size=batch, num_workers=workers, drop_last=True))
            counts.append(n)
        assert ds.steps_every_rank_can_take(batch, workers) == min(counts) and min(counts) > 0
