"""The dataset card's statistics: every row on the driver (the former way) vs per-shard counters merged.

    .venv/bin/python benchmarks/card_stats.py [--rows 2000000] [--shards 20]

Synthetic shards of the card's columns (random poses, 70 % pseudo-labels, 50 images per identity) are
written to a temporary run; then the card's former computation (`pipeline/card.py` at commit 2432333:
the 7 columns of every shard read into one table, numpy over all rows) and today's
`card_stats.summarize` (per shard, merged; here in one process, as a client would run the per-shard
part on the workers) each run once. Reported: the driver's peak of Python allocations (tracemalloc:
numpy arrays included) plus Arrow's pool peak, per row, and seconds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc

import numpy as np
import pyarrow as pa

from pltd.pipeline import storage
from pltd.pipeline.card_stats import summarize
from pltd.pipeline.layout import RunLayout, read_parts


def old_summarize(layout: RunLayout) -> dict:
    """The driver's work of `card.summarize` at commit 2432333 (all rows of 7 columns at once)."""
    cols = ["source", "face_id", "pose", "label_kind", "n_samples", "fit_error", "eye_closed"]
    t = read_parts(layout.pltd, columns=cols)
    pose = t.column("pose").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 3)
    fit = t.column("fit_error").to_numpy()
    pseudo = np.asarray(t.column("label_kind").cast(pa.string()).to_pylist()) == "pseudo"
    per_id = np.bincount(t.column("face_id").to_numpy())
    per_id = per_id[per_id > 0]
    sources = np.unique(np.asarray(t.column("source").cast(pa.string()).to_pylist()), return_counts=True)
    kept = np.unique(t.column("n_samples").to_numpy()[pseudo], return_counts=True)
    return {"rows": t.num_rows, "sources": sources, "per_id": per_id, "kept": kept,
            "abs_mean": np.nanmean(np.abs(pose), axis=0), "median": np.nanmedian(fit[pseudo]),
            "p95": np.nanpercentile(fit[pseudo], 95), "_arrays": (pose, fit[pseudo], per_id)}  # fmt: skip


def write_shards(layout: RunLayout, rows: int, shards: int) -> None:
    rng = np.random.default_rng(0)
    per = rows // shards
    for i in range(shards):
        pseudo = rng.random(per) < 0.7
        t = pa.table({
            "source": pa.array(rng.choice(["vggface2", "ms1mv3", "300w_lp"], per)).dictionary_encode(),
            "face_id": pa.array((i * per + np.arange(per)) // 50, pa.int64()),
            "pose": pa.FixedSizeListArray.from_arrays(pa.array(rng.uniform(-90, 90, 3 * per).astype(np.float32)), 3),
            "label_kind": pa.array(np.where(pseudo, "pseudo", "ground_truth")).dictionary_encode(),
            "n_samples": pa.array(np.where(pseudo, rng.integers(1, 9, per), 0), pa.int8()),
            "fit_error": pa.array(np.where(pseudo, rng.gamma(2, 0.02, per), np.nan).astype(np.float32)),
            "eye_closed": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(2 * per).astype(np.float32)), 2),
        })  # fmt: skip
        storage.write_parquet(layout.shard(i), t)


def run(fn, layout: RunLayout) -> tuple[int, int, float]:
    pool = pa.default_memory_pool()
    arrow0 = pool.max_memory()
    tracemalloc.start()
    t0 = time.perf_counter()
    fn(layout)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, pool.max_memory() - arrow0, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--shards", type=int, default=20)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pltd-card-stats-")
    try:
        layout = RunLayout(tmp)
        write_shards(layout, args.rows, args.shards)
        new = run(summarize, layout)  # first: the Arrow pool's peak only grows
        old = run(old_summarize, layout)
        n = args.rows
        print(f"card statistics of {n:,} rows in {args.shards} shards (driver, bytes per row; seconds)")
        for name, (py, arrow, s) in (("old: every row", old), ("new: per shard, merged", new)):
            print(f"  {name:24s} Python {py / n:7.1f}  Arrow {arrow / n:7.1f}  {s:6.2f} s")
        print(f"  ratio old / new, Python + Arrow peak: {(old[0] + old[1]) / max(1, new[0] + new[1]):.1f}x; "
              f"time: {old[2] / new[2]:.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
