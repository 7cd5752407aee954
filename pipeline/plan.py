"""Partition plans: the driver lists each source once and fixes every image's partition number.

The plan is saved as `RUN/plan/<source>.parquet` with one row group per partition, so a worker
reads its own partition and nothing else, and a rerun (or a resumed crash) sees the same ids even
if the source folder changed meanwhile. `RUN/plan/<source>.json`, written last, marks it complete.
"""

from __future__ import annotations

import contextlib
import time

import pyarrow as pa
import pyarrow.parquet as pq

from pltd.pipeline import isolate, storage
from pltd.pipeline.layout import RunLayout
from pltd.stages.readers.base import PLAN, PlanStats, Source, get_reader


def make_plan(run: str, source: Source, rows_per_partition: int) -> dict:
    """List `source` and write its plan (or reuse a complete one); returns the plan summary."""
    layout = RunLayout(run)
    with contextlib.suppress(FileNotFoundError):  # one read, not an existence check and a read
        return storage.read_json(layout.plan_marker(source.name))
    t0 = time.perf_counter()
    stats = PlanStats()
    fs, path = storage.fs_path(layout.plan(source.name))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.tmp-plan"
    n_parts = 0
    rows: list[dict] = []
    with fs.open(tmp, "wb") as f, pq.ParquetWriter(f, PLAN, compression="zstd") as writer:

        def flush() -> None:
            nonlocal n_parts, rows
            table = pa.Table.from_pylist([{**r, "part": n_parts} for r in rows], schema=PLAN)
            writer.write_table(table, row_group_size=max(1, len(rows)))  # one row group = one partition
            n_parts += 1
            rows = []

        for item in get_reader(source.format).plan_items(source, stats):
            rows.append(item)
            stats.images += 1
            if len(rows) == rows_per_partition:
                flush()
        if rows:
            flush()
    fs.mv(tmp, path)
    summary = {
        "source": source.name,
        "format": source.format,
        "root": source.root,
        "images": stats.images,
        "partitions": n_parts,
        "rows_per_partition": rows_per_partition,
        "ignored": stats.ignored,
        "ignored_examples": stats.examples,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    storage.write_json(layout.plan_marker(source.name), summary)
    return summary


def read_partition(run: str, source: str, part: int) -> pa.Table:
    """The plan rows of one partition (its own row group only)."""
    fs, path = storage.fs_path(RunLayout(run).plan(source))
    with fs.open(path, "rb") as f:
        table = pq.ParquetFile(f).read_row_group(part)
    parts = set(table.column("part").to_pylist())
    if parts != {part}:
        raise RuntimeError(f"plan {path}: row group {part} holds partitions {sorted(parts)}")
    return isolate.restrict(table)  # a task on part of a partition sees only its rows
