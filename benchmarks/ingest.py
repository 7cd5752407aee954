"""Ingest speed: .rec records/s and folder scan per core, and the Dask runner's overhead.

    python benchmarks/ingest.py [--records 20000] [--rows-per-partition 1000]

Baseline for the overhead figure: the same partitions computed and written by a plain loop in one
process (`execute` called directly). Target: Dask runner with one worker ≤ 10 % slower.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
from PIL import Image
from rich.console import Console

from pltd.pipeline.catalog import Ingest
from pltd.pipeline.cluster import WORKER_CONFIG
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.partition import Job, PartitionTask, execute
from pltd.pipeline.plan import make_plan
from pltd.pipeline.runner import run_stage
from pltd.stages.ingest import IngestSettings
from pltd.stages.readers.base import Source
from pltd.stages.readers.folders import ImageFolderOptions
from pltd.stages.readers.insightface_rec import RecOptions
from pltd.stages.recordio import RecordWriter, pack


def ingest_compute(run: str, source, part: int, settings):
    """The ingest stage's own work on one partition (what its Dask task runs)."""
    return Ingest().compute(RunLayout(run), source, part, settings)


def faces(n_distinct: int = 64) -> list[bytes]:
    """Distinct 112x112 JPEGs (smooth noise, ~3-5 KB like MS1MV3's aligned faces)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n_distinct):
        small = rng.integers(0, 255, (14, 14, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((112, 112), Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def write_rec(root: Path, n: int, jpegs: list[bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "train.rec", "wb") as rec, open(root / "train.idx", "wb") as idx:
        w = RecordWriter(rec, idx)
        w.write(0, pack([n + 1, n + 1], b""))
        for k in range(1, n + 1):
            w.write(k, pack(float(k // 50), jpegs[k % len(jpegs)]))


def write_tree(root: Path, n: int, jpegs: list[bytes], per_class: int = 100) -> None:
    for k in range(n):
        d = root / f"n{k // per_class:06d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{k:07d}.jpg").write_bytes(jpegs[k % len(jpegs)])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rows-per-partition", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/out/ingest.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pltd-bench-"))
    results: dict = {"records": args.records, "rows_per_partition": args.rows_per_partition}
    try:
        jpegs = faces()
        write_rec(tmp / "rec", args.records, jpegs)
        write_tree(tmp / "tree", args.records, jpegs)
        rec = Source("ms1m", "insightface_rec", str(tmp / "rec"), RecOptions())
        tree = Source("tree", "image_folder", str(tmp / "tree"), ImageFolderOptions())
        full, header = IngestSettings(verify="full"), IngestSettings(verify="header")

        for name, src in (("rec", rec), ("folder", tree)):
            run = str(tmp / f"run-{name}")
            summary, t_plan = timed(lambda src=src, run=run: make_plan(run, src, args.rows_per_partition))
            results[f"{name}_plan_per_s"] = summary["images"] / t_plan
            for vname, settings in (("header", header), ("full", full)):
                n_parts = summary["partitions"]
                _, t = timed(
                    lambda src=src, run=run, settings=settings, n_parts=n_parts: [
                        ingest_compute(run, src, p, settings) for p in range(n_parts)
                    ]
                )
                results[f"{name}_read_{vname}_per_s_per_core"] = summary["images"] / t

        # runner overhead: the same partitions through a plain loop vs the Dask runner
        from distributed import Client, LocalCluster

        run_loop, n_parts = (
            str(tmp / "run-rec"),
            make_plan(str(tmp / "run-rec"), rec, args.rows_per_partition)["partitions"],
        )

        def jobs(run):
            return [
                Job(PartitionTask(run, "ingest", "ms1m", p), ingest_compute, (run_loop, rec, p, full))
                for p in range(n_parts)
            ]

        _, t_loop = timed(lambda: [execute(j.task, j.compute, j.args, {}) for j in jobs(str(tmp / "loop"))])
        results["loop_seconds"] = t_loop
        for workers in (1, 2):
            with (
                dask.config.set(WORKER_CONFIG),
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl,
                Client(cl) as client,
            ):
                # warm workers (imports, first-use initialisation) as the loop's process is warm: a real
                # build pays this once per worker, not per partition
                client.run(importlib.import_module, "pltd.pipeline.build")
                run_stage(client, "ingest", jobs(str(tmp / f"warm{workers}"))[:workers], {}, Console(quiet=True))
                _, t = timed(
                    lambda client=client, workers=workers: run_stage(
                        client, "ingest", jobs(str(tmp / f"dask{workers}")), {}, Console(quiet=True)
                    )
                )
            results[f"dask_{workers}w_seconds"] = t
        results["runner_overhead_1_worker"] = results["dask_1w_seconds"] / t_loop - 1
        results["speedup_2_workers"] = t_loop / results["dask_2w_seconds"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"records: {args.records}, rows per partition: {args.rows_per_partition}")
    print(f".rec plan (read .idx + header):   {results['rec_plan_per_s']:>10,.0f} records/s")
    print(f".rec read + header check:         {results['rec_read_header_per_s_per_core']:>10,.0f} records/s/core")
    print(f".rec read + full decode check:    {results['rec_read_full_per_s_per_core']:>10,.0f} records/s/core")
    print(f"folder scan (plan):               {results['folder_plan_per_s']:>10,.0f} files/s")
    print(f"folder read + header check:       {results['folder_read_header_per_s_per_core']:>10,.0f} files/s/core")
    print(f"folder read + full decode check:  {results['folder_read_full_per_s_per_core']:>10,.0f} files/s/core")
    print(
        f"runner: plain loop {results['loop_seconds']:.2f} s, Dask 1 worker {results['dask_1w_seconds']:.2f} s "
        f"→ overhead {results['runner_overhead_1_worker']:+.1%} (target ≤ +10%); "
        f"Dask 2 workers {results['dask_2w_seconds']:.2f} s → {results['speedup_2_workers']:.2f}x the loop"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
