"""PLTD reader speed: decode + face-region crop + resize to 112 per core, DataLoader scaling, shard
write MB/s, the reader's memory against its shuffle buffer, and uint8 vs float32 batches.

    python benchmarks/loader.py [--rows 4000]

Targets: ≥ 1,500 images/s per core for decode + crop + resize (the ratio printed is against that
target); DataLoader with 2 workers, uint8 NHWC batches (normalised later on the device) ≥ 1.5× the
former float32 NCHW batches built in the workers (both measured in the same run, best of 3 passes).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pltd.pipeline.storage import write_parquet
from pltd.schemas import PLTD
from pltd.trainer.data import Augment, PLTDDataset, worker_init

TARGET = 1500.0


def synthetic_rows(n: int, distinct: int = 200) -> list[dict]:
    """Face-region-like rows: 256x240 JPEGs at quality 95 (smooth content, ~20-30 KB)."""
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(distinct):
        small = rng.integers(0, 255, (24, 26, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((256, 240), Image.BICUBIC).save(buf, format="JPEG", quality=95)
        jpegs.append(buf.getvalue())
    rows = []
    for k in range(n):
        pts = rng.uniform(70, 180, (68, 2))
        rows.append({"image_id": f"r{k}", "source": "syn", "source_label": str(k % 500), "face_id": k % 500,
                     "image": jpegs[k % distinct], "width": 256, "height": 240, "bbox": [*pts.min(0), *pts.max(0)],
                     "landmarks": pts.ravel().tolist(), "pose": [0.0, 0.0, 0.0], "label_kind": "pseudo",
                     "n_samples": 3, "fit_error": 0.01, "eye_closed": [0.0, 0.0], "source_path": "x"})  # fmt: skip
    return rows


class Float32Samples(PLTDDataset):
    """The former sample path, for comparison: float32 3×S×S in [−1, 1] made in the worker."""

    def sample(self, row, rng):
        s = super().sample(row, rng)
        s["image"] = s["image"].permute(2, 0, 1).contiguous().float().div_(127.5).sub_(1.0)
        return s


def loader_rate(ds: PLTDDataset, workers: int) -> float:
    loader = DataLoader(ds, batch_size=128, num_workers=workers, worker_init_fn=worker_init)
    t0 = time.perf_counter()
    n = sum(len(b["image_id"]) for b in loader)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--out", default="benchmarks/out/loader.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pltd-loader-"))
    table = pa.Table.from_pylist(synthetic_rows(args.rows), schema=PLTD)
    mb = table.nbytes / 2**20
    t0 = time.perf_counter()
    shards = []
    for i, start in enumerate(range(0, args.rows, 1000)):
        path = tmp / f"part-{i:05d}.parquet"
        write_parquet(str(path), table.slice(start, 1000), row_group_rows=250)
        shards.append(str(path))
    write_s = time.perf_counter() - t0
    res: dict = {"rows": args.rows, "shard_write_mb_per_s": mb / write_s, "table_mb": mb}

    torch.set_num_threads(1)
    ds = PLTDDataset(shards, Augment(input_size=112), buffer_size=512)
    next(iter(ds))
    t0 = time.perf_counter()
    n = sum(1 for _ in ds)
    res["images_per_s_one_core"] = n / (time.perf_counter() - t0)
    res["rss_gb_after_single_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for workers in (1, 2):
        loader = DataLoader(ds, batch_size=128, num_workers=workers, persistent_workers=False)
        t0 = time.perf_counter()
        n = sum(len(b["image_id"]) for b in loader)
        res[f"images_per_s_{workers}_workers"] = n / (time.perf_counter() - t0)
    # memory: the buffer holds encoded rows (~30 KB each), so it bounds the reader's growth
    for buf in (64, 4096):
        ds_b = PLTDDataset(shards, Augment(input_size=112), buffer_size=buf)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in ds_b:
            pass
        res[f"rss_growth_mb_buffer_{buf}"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    # uint8 vs float32 batches, 2 workers, alternating passes (a shared machine's load hits both alike)
    rates: dict[str, list[float]] = {"uint8": [], "float32": []}
    for _ in range(3):
        rates["float32"].append(loader_rate(Float32Samples(shards, Augment(input_size=112), buffer_size=512), 2))
        rates["uint8"].append(loader_rate(PLTDDataset(shards, Augment(input_size=112), buffer_size=512), 2))
    res["loader_2_workers_float32"], res["loader_2_workers_uint8"] = max(rates["float32"]), max(rates["uint8"])
    res["uint8_vs_float32"] = res["loader_2_workers_uint8"] / res["loader_2_workers_float32"]
    r = res["images_per_s_one_core"]
    print(f"decode + crop + resize to 112, one core: {r:,.0f} images/s ({r / TARGET:.2f}x the 1,500/s target)")
    w1, w2 = res["images_per_s_1_workers"], res["images_per_s_2_workers"]
    print(f"DataLoader: 1 worker {w1:,.0f}/s, 2 workers {w2:,.0f}/s (2 cores here)")
    print(
        f"DataLoader, 2 workers, batch 128: uint8 NHWC {res['loader_2_workers_uint8']:,.0f}/s vs former float32 "
        f"NCHW {res['loader_2_workers_float32']:,.0f}/s: {res['uint8_vs_float32']:.2f}x (target >= 1.5x)"
    )
    print(f"shard write: {res['shard_write_mb_per_s']:.0f} MB/s ({mb:.0f} MB, zstd, row groups of 250)")
    print(
        f"peak RSS growth with shuffle buffer 64: {res['rss_growth_mb_buffer_64']:.0f} MB, "
        f"4096: {res['rss_growth_mb_buffer_4096']:.0f} MB"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
