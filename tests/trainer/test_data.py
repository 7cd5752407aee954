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

from pltd.input_contract import InputContract
from pltd.schemas import PLTD
from pltd.trainer.data import Augment, PLTDDataset, crop_sample, flip_sample


def synthetic_shards(tmp_path, n_shards=3, rows=50, group=7, yaw=None, kind=None, source=None) -> list[str]:
    """Tiny PLTD shards; yaw, kind and source, when given, are functions of the row number k."""
    rng = np.random.default_rng(0)
    paths, k = [], 0
    for s in range(n_shards):
        recs = []
        for _ in range(rows):
            img = rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG")
            pts = rng.uniform(20, 60, (68, 2))
            recs.append({"image_id": f"r{k}", "source_label": "x", "face_id": k % 9, "image": buf.getvalue(),
                         "width": 80, "height": 96, "bbox": [*pts.min(0), *pts.max(0)], "landmarks": pts.ravel().tolist(),
                         "pose": [yaw(k) if yaw else 10.0, 5.0, -3.0], "label_kind": kind(k) if kind else "pseudo",
                         "n_samples": 3, "fit_error": 0.01, "source": source(k) if source else "syn",
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
    assert s["image"].shape == (112, 112, 3) and s["image"].dtype == torch.uint8  # HWC RGB, normalised on device
    assert s["landmarks"].shape == (68, 2) and s["pose"].shape == (3,) and s["face_id"].dtype == torch.int64
    assert len(ds) == 10


def test_uint8_batches_normalise_to_the_float_path_bit_for_bit(tmp_path):
    """Consistency (pltd vs pltd): the uint8 NHWC batch normalised by pltd's input contract equals, bit for
    bit, the float32 samples the reader used to make on the CPU (x / 127.5 − 1 per sample, NCHW), in
    both memory layouts the trainer uses."""
    ds = PLTDDataset(synthetic_shards(tmp_path, 1, 24), Augment(input_size=112), seed=5)
    batch = next(iter(DataLoader(ds, batch_size=12, num_workers=0)))
    assert batch["image"].shape == (12, 112, 112, 3) and batch["image"].dtype == torch.uint8
    # the former sample path, verbatim: torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()…
    before = torch.stack([torch.from_numpy(np.array(img.numpy())).permute(2, 0, 1).contiguous().float().div_(127.5)
                          .sub_(1.0) for img in batch["image"]])  # fmt: skip
    after = InputContract(input_size=112).torch_input(batch["image"])
    assert after.dtype == torch.float32 and after.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(after, before) and torch.equal(after.contiguous(), before)
    assert before.min() >= -1.0 and before.max() <= 1.0 and before.std() > 0.1  # real images, not a constant


def _read_epoch(shards, world, workers, epoch=0, **kw) -> list[list[str]]:
    """image_ids each rank reads in one epoch through real DataLoaders."""
    out = []
    for rank in range(world):
        ds = PLTDDataset(shards, Augment(input_size=16), buffer_size=4, seed=3, rank=rank, world_size=world, **kw)
        ds.set_epoch(epoch)
        out.append([i for b in DataLoader(ds, batch_size=2, num_workers=workers) for i in b["image_id"]])
    return out


def test_fewer_row_groups_than_readers_splits_row_ranges(tmp_path):
    """Consistency: 2 row groups, 3 ranks × 2 workers = 6 readers: every rank gets rows (before, 4 of
    the 6 readers got nothing), each row exactly once per epoch, the same split on every run."""
    shards = synthetic_shards(tmp_path, n_shards=1, rows=20, group=10)
    assert pq.ParquetFile(shards[0]).metadata.num_row_groups == 2
    per_rank = _read_epoch(shards, world=3, workers=2)
    seen = [i for r in per_rank for i in r]
    assert sorted(seen) == sorted(f"r{k}" for k in range(20))  # exactly once
    assert sorted(map(len, per_rank)) == [6, 7, 7]  # near-equal shares: 20 rows cut into 6 ranges of 3–4
    assert _read_epoch(shards, world=3, workers=2) == per_rank  # deterministic
    ds = PLTDDataset(shards, Augment(input_size=16), seed=3, rank=0, world_size=3)
    assert sorted(sum(len(rows) for *_, rows in units) for units in ds.plan(6)) == [3, 3, 3, 3, 4, 4]


def test_persistent_workers_see_set_epoch(tmp_path):
    """Consistency: the epoch reaches persistent DataLoader workers (shared memory), so each epoch is
    reshuffled and still read exactly once."""
    shards = synthetic_shards(tmp_path, n_shards=2, rows=12, group=4)
    ds = PLTDDataset(shards, Augment(input_size=16), buffer_size=4, seed=3)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        epochs.append([i for b in loader for i in b["image_id"]])
    assert all(sorted(e) == sorted(f"r{k}" for k in range(24)) for e in epochs)
    assert epochs[0] != epochs[1]
    ds.set_epoch(1)
    assert [i for b in DataLoader(ds, batch_size=4, num_workers=2) for i in b["image_id"]] == epochs[1]


def test_steps_every_rank_can_take_bounds_each_rank(tmp_path):
    shards = synthetic_shards(tmp_path, n_shards=3, rows=50, group=7)  # uneven row groups
    for world, workers, batch in ((2, 2, 4), (3, 1, 8)):
        counts = []
        for rank in range(world):
            ds = PLTDDataset(shards, Augment(input_size=16), seed=1, rank=rank, world_size=world)
            n = sum(1 for _ in DataLoader(ds, batch_size=batch, num_workers=workers, drop_last=True))
            counts.append(n)
        assert ds.steps_every_rank_can_take(batch, workers) == min(counts) and min(counts) > 0
