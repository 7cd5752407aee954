"""Driver memory of planning a folder tree, and of the VGGFace2 boxes, the former driver-side listing vs now.

    .venv/bin/python benchmarks/plan_memory.py [--files 300000] [--folders 3000] [--box-rows 3100000]

A tree of `--files` empty files (VGGFace2's shape: `n000001/0001_01.jpg`, `--folders` class folders)
is made in a temporary folder and planned three ways, each in a fresh subprocess:

- `old`: the driver path of `make_plan` at commit 2432333, copied below: one `fs.find`
  of the whole tree, sorted relative paths, one `pa.Table.from_pylist` per partition;
- `new-cluster`: today's `make_plan` with a LocalCluster of 2 worker processes, as `pltd build` runs it
  (the listing happens on the workers; the driver streams their chunks into the plan);
- `new-local`: today's `make_plan` without a cluster (the same listing tasks, one after another, here).

Driver memory is reported three ways: the peak of Python allocations (`tracemalloc`), the peak of
Arrow's memory pool, and the process's peak RSS over its RSS before planning (`ru_maxrss`), each
divided by the number of files. Then the boxes: a synthetic loose_bb CSV of `--box-rows` rows, loaded
as before (pandas → a dict of lists) vs converted to sorted Parquet and joined for one listing task's
64 class folders. The temporary tree is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve()


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def old_make_plan(run: str, root: str, rows_per_partition: int) -> int:
    """The driver's work in `make_plan` + `list_images` at commit 2432333 (image_folder source)."""
    import posixpath

    import fsspec
    import pyarrow.parquet as pq

    from pltd.stages.readers.base import IMAGE_EXTENSIONS, PLAN

    fs, root = fsspec.core.url_to_fs(root)
    found = fs.find(root, withdirs=False)
    rels = sorted(r for r in (posixpath.relpath(p, root) for p in found) if r.lower().endswith(IMAGE_EXTENSIONS))
    n_parts, rows = 0, []
    os.makedirs(run, exist_ok=True)
    with pq.ParquetWriter(os.path.join(run, "plan.parquet"), PLAN, compression="zstd") as writer:

        def flush() -> None:
            nonlocal n_parts, rows
            table = pa.Table.from_pylist([{**r, "part": n_parts} for r in rows], schema=PLAN)
            writer.write_table(table, row_group_size=max(1, len(rows)))
            n_parts += 1
            rows = []

        for rel in rels:
            label = rel.split("/")[0] if "/" in rel else None
            rows.append({"item": rel, "label": label, "bbox": None})
            if len(rows) == rows_per_partition:
                flush()
        if rows:
            flush()
    return len(rels)


def plan_with(variant: str, tree: str, run: str, client) -> int:
    from pltd.pipeline.plan import make_plan
    from pltd.stages.readers.base import Source
    from pltd.stages.readers.folders import ImageFolderOptions

    if variant == "old":
        return old_make_plan(run, tree, 1000)
    return make_plan(run, Source("faces", "image_folder", tree, ImageFolderOptions()), 1000, client)["images"]


def measure(variant: str, tree: str, run: str) -> dict:
    """In a fresh process: plan `tree` with `variant`; memory peaks and seconds."""
    client = cluster = None
    if variant == "new-cluster":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    warm = Path(run).with_name(f"warm-{variant}")  # a tiny plan first: imports and first-call costs are not per file
    make_tree(warm / "tree", 20, 2)
    plan_with(variant, str(warm / "tree"), str(warm / "run"), client)
    pool = pa.default_memory_pool()
    rss0 = rss_now()
    tracemalloc.start()
    t0 = time.perf_counter()
    images = plan_with(variant, tree, run, client)
    seconds = time.perf_counter() - t0
    py_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = {"images": images, "seconds": seconds, "python_peak": py_peak, "arrow_peak": pool.max_memory(),
           "rss_growth": max(0, peak_rss() - rss0)}  # fmt: skip
    if client is not None:
        client.close()
        cluster.close()
    return out


def make_tree(root: Path, files: int, folders: int) -> None:
    per = -(-files // folders)
    made = 0
    for c in range(folders):
        d = root / f"n{c:06d}"
        d.mkdir(parents=True)
        for k in range(min(per, files - made)):
            (d / f"{k:04d}_01.jpg").touch()
        made += min(per, files - made)


def boxes_benchmark(tmp: Path, rows: int, folders: int) -> dict:
    """Old: the CSV as a dict (pandas, then one Python list per row); new: sorted Parquet + one task's join."""
    from pltd.stages.readers.folders import boxes_to_parquet, join_boxes

    rng = np.random.default_rng(0)
    per = -(-rows // folders)
    names = pa.array([f"n{i // per:06d}/{i % per:04d}_01" for i in range(rows)])
    xywh = {k: pa.array(rng.integers(0, 200, rows)) for k in "XYWH"}
    csv_path = tmp / "loose_bb_train.csv"
    from pyarrow import csv

    csv.write_csv(pa.table({"NAME_ID": names, **xywh}), csv_path)
    del names, xywh
    out = {"rows": rows}
    for name, fn in (
        ("old_dict", lambda: _old_load_boxes(str(csv_path))),
        ("new_convert", lambda: boxes_to_parquet(str(csv_path), str(tmp / "work"))),
    ):
        pool_before = pa.default_memory_pool().max_memory()
        tracemalloc.start()
        t0 = time.perf_counter()
        kept = fn()
        out[f"{name}_seconds"] = time.perf_counter() - t0
        out[f"{name}_python_peak"] = tracemalloc.get_traced_memory()[1]
        out[f"{name}_python_held"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        out[f"{name}_arrow_peak"] = pa.default_memory_pool().max_memory() - pool_before
        if name == "old_dict":
            del kept
    rels = [f"n{c:06d}/{k:04d}_01.jpg" for c in range(64) for k in range(per)]
    tracemalloc.start()
    t0 = time.perf_counter()
    joined = join_boxes(str(tmp / "work" / "boxes.parquet"), rels)
    out["new_join_64_folders_seconds"] = time.perf_counter() - t0
    out["new_join_64_folders_python_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["new_join_rows"] = len(joined)
    return out


def _old_load_boxes(url: str) -> dict:
    """`_load_boxes` at commit 2432333: the whole CSV as {"class/file": [x0, y0, x1, y1]}."""
    import fsspec
    import pandas as pd

    with fsspec.open(url, "rt") as f:
        df = pd.read_csv(f)
    x, y = df["X"].to_numpy(float), df["Y"].to_numpy(float)
    x1, y1 = x + df["W"].to_numpy(float), y + df["H"].to_numpy(float)
    return {n: [a, b, c, d] for n, a, b, c, d in zip(df["NAME_ID"].astype(str), x, y, x1, y1, strict=True)}


def child(variant: str, tree: str, run: str) -> dict:
    cmd = [sys.executable, str(HERE), "--child", variant, "--tree", tree, "--run", run]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=300_000)
    ap.add_argument("--folders", type=int, default=3_000)
    ap.add_argument("--box-rows", type=int, default=3_100_000)
    ap.add_argument("--child")
    ap.add_argument("--tree")
    ap.add_argument("--run")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.tree, args.run)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="pltd-plan-memory-"))
    try:
        t0 = time.perf_counter()
        make_tree(tmp / "tree", args.files, args.folders)
        print(f"tree: {args.files:,} empty files in {args.folders:,} folders, made in {time.perf_counter() - t0:.0f} s")
        res = {v: child(v, str(tmp / "tree"), str(tmp / f"run-{v}")) for v in ("old", "new-cluster", "new-local")}
        n = args.files
        print(f"{'driver, B per file':32s} {'python peak':>12s} {'arrow peak':>11s} {'RSS growth':>11s} {'s':>8s}")
        for v, r in res.items():
            assert r["images"] == n, (v, r["images"])
            print(f"{v:32s} {r['python_peak'] / n:12.1f} {r['arrow_peak'] / n:11.1f} {r['rss_growth'] / n:11.1f} "
                  f"{r['seconds']:8.1f}")  # fmt: skip
        old, new = res["old"], res["new-cluster"]
        for k in ("python_peak", "rss_growth"):
            print(f"ratio old / new-cluster, {k}: {old[k] / max(new[k], 1):.1f}x")
        b = boxes_benchmark(tmp, args.box_rows, max(1, args.box_rows // 340))
        print(f"boxes: {b['rows']:,} rows")
        print(
            f"  old (pandas → dict on the driver): {b['old_dict_python_held'] / 2**20:,.0f} MiB of Python objects "
            f"held ({b['old_dict_python_peak'] / 2**20:,.0f} MiB peak), {b['old_dict_seconds']:.1f} s"
        )
        print(
            f"  new (CSV → sorted Parquet, once, on a worker): {b['new_convert_arrow_peak'] / 2**20:,.0f} MiB Arrow "
            f"peak, {b['new_convert_python_peak'] / 2**20:,.1f} MiB Python peak, {b['new_convert_seconds']:.1f} s"
        )
        print(
            f"  new (one task's join, 64 folders = {b['new_join_rows']:,} images): "
            f"{b['new_join_64_folders_python_peak'] / 2**20:,.1f} MiB Python peak, "
            f"{b['new_join_64_folders_seconds']:.2f} s"
        )
        print(
            f"  ratio old dict held / new driver (nothing held): driver keeps 0 B a box "
            f"(was {b['old_dict_python_held'] / b['rows']:.0f} B a box)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
