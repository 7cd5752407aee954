"""`pltd verify` time per 1,000 partitions, against the size check every resume makes and a bare read.

    .venv/bin/python benchmarks/verify.py [--partitions 1000] [--rows 1000] [--dir /tmp/verify-bench]

Writes a run of N partitions of one stage through the runner's own `write_partition` (output rows
like the landmarks stage's: id, 136 float32 landmarks, 3 angles; every 10th row rejected), then
times, on a warm page cache (each measured twice, the second kept):

- the resume check: `verify.size_problems` (one listing of each output folder vs the markers);
- `pltd verify`: `verify.verify_run` (every file read, SHA-256, Parquet footer), 8 threads;
- a bare read of the same files (`cat`), the floor for any check that reads the bytes.

Prints seconds per 1,000 partitions and the ratios verify/size check and verify/bare read.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.partition import PartitionTask, write_partition
from pltd.pipeline.verify import size_problems, verify_run
from pltd.schemas import REJECTED


def make_run(root: Path, parts: int, rows: int) -> int:
    rng = np.random.default_rng(0)
    total = 0
    for p in range(parts):
        ids = [f"{p}-{i}" for i in range(rows)]
        keep = [i for i in range(rows) if i % 10]
        lm = rng.random((len(keep), 136), dtype=np.float32)
        accepted = pa.table(
            {
                "image_id": [ids[i] for i in keep],
                "landmarks": pa.FixedSizeListArray.from_arrays(pa.array(lm.ravel()), 136),
                "pose": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(3 * len(keep), dtype=np.float32)), 3),
            }
        )
        rej = [
            {"image_id": ids[i], "source": "s", "stage": "landmarks", "reason": "no_face"} for i in range(0, rows, 10)
        ]
        stats = write_partition(
            PartitionTask(str(root), "landmarks", "s", p),
            accepted,
            pa.Table.from_pylist(rej, schema=REJECTED),
            rows,
            {},
            time.perf_counter(),
        )
        total += stats["files"]["output"]["bytes"] + stats["files"]["rejected"]["bytes"]
    return total


def timed(fn) -> float:
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/pltd-verify-bench"))
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    nbytes = make_run(args.dir, args.partitions, args.rows)
    layout = RunLayout(str(args.dir))
    markers = storage.read_jsons([layout.marker("landmarks", "s", p) for p in range(args.partitions)])
    size_s = timed(lambda: size_problems(layout, "landmarks", "s", markers))
    report = verify_run(layout)
    assert report.ok and report.checked_partitions == args.partitions, report.problems[:3]
    verify_s = timed(lambda: verify_run(layout))
    files = sorted(str(p) for p in args.dir.rglob("part-*.parquet"))
    read_s = timed(lambda: [Path(f).read_bytes() for f in files])
    per = 1000 / args.partitions
    print(f"{args.partitions} partitions of {args.rows} rows, {nbytes / 1e6:.1f} MB in {len(files)} files")
    print(f"resume size check : {size_s * per:8.3f} s per 1,000 partitions")
    print(f"pltd verify       : {verify_s * per:8.3f} s per 1,000 partitions ({nbytes / verify_s / 1e6:.0f} MB/s)")
    print(f"bare read (cat)   : {read_s * per:8.3f} s per 1,000 partitions")
    print(f"ratio verify / size check {verify_s / size_s:.0f}x; verify / bare read {verify_s / read_s:.2f}x")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
