"""Partition plans: each source is listed once and every image's partition number is fixed.

The plan is saved as `RUN/plan/<source>.parquet` with one row group per partition, so a worker
reads its own partition and nothing else, and a rerun (or a resumed crash) sees the same ids even
if the source folder changed meanwhile. `RUN/plan/<source>.json`, written last, marks it complete.

A folder tree is listed in parallel on the workers: the driver lists the root (opening folders one
level more while there are too few), cuts its entries into runs, and each task lists one run of
folders and writes its plan rows to `RUN/plan/<source>.work/chunk-NNNNN.parquet`. The driver then
streams the chunks, in order, into the plan's row groups: it holds the root's entries and one
partition's Arrow rows, never a Python object per image. Entries are ordered so that the plan is the
whole tree's sorted paths whatever the cut (`readers.base.entry_key`), so partition ids are the ones
one sorted listing gives. Sources with an index (RecordIO) stream their rows from the index instead.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pltd.pipeline import isolate, storage
from pltd.pipeline.layout import RunLayout
from pltd.stages.readers.base import PLAN, Entry, PlanStats, Source, get_reader, list_images, tree_entries

TASKS_PER_WORKER = 4  # listing tasks per worker, for balance between folders of different sizes
MAX_ENTRIES_PER_TASK = 64  # top-level entries one listing task lists (VGGFace2: ~30 K images)
READ_BATCH = 65_536  # chunk rows the driver reads at a time


def list_chunk(source: Source, entries: list[Entry], context: dict, url: str) -> tuple[int, PlanStats]:
    """On a worker: the plan rows of a run of entries, written to `url`; (rows, what was left out)."""
    reader, stats = get_reader(source.format), PlanStats()
    table = reader.plan_listed(source, list_images(source, stats, reader.companions, entries), stats, context)
    storage.write_parquet(url, table)
    return table.num_rows, stats


def runs_of(entries: list[Entry], workers: int) -> list[list[Entry]]:
    """Entries cut into consecutive runs: at least TASKS_PER_WORKER per worker, at most MAX_ENTRIES_PER_TASK each."""
    per = max(1, min(MAX_ENTRIES_PER_TASK, math.ceil(len(entries) / (TASKS_PER_WORKER * max(1, workers)))))
    return [entries[i : i + per] for i in range(0, len(entries), per)]


def _listed(source: Source, stats: PlanStats, work: str, client) -> Iterator[pa.Table]:
    """The plan rows of a listed source, chunk by chunk in plan order (listed on the workers)."""
    reader = get_reader(source.format)
    workers = len(client.scheduler_info(n_workers=-1)["workers"]) if client is not None else 1
    runs = runs_of(tree_entries(source, TASKS_PER_WORKER * workers), workers)
    urls = [storage.join(work, f"chunk-{i:05d}.parquet") for i in range(len(runs))]
    if client is None:
        context = reader.plan_context(source, work)
        results = (list_chunk(source, run, context, url) for run, url in zip(runs, urls, strict=True))
    else:
        context = client.submit(reader.plan_context, source, work, pure=False).result()
        futures = client.map(list_chunk, [source] * len(runs), runs, [context] * len(runs), urls, pure=False)
        results = (f.result() for f in futures)  # in plan order; later chunks keep listing meanwhile
    for url, (_, chunk_stats) in zip(urls, results, strict=True):
        stats.merge(chunk_stats)
        fs, path = storage.fs_path(url)
        with fs.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=READ_BATCH):
                yield pa.Table.from_batches([batch])


def write_partitions(writer: pq.ParquetWriter, tables: Iterator[pa.Table], rows_per_partition: int) -> tuple[int, int]:
    """Cut a stream of plan rows into partitions of `rows_per_partition`, one row group each; (rows, partitions)."""
    pending: list[pa.Table] = []
    held = rows = parts = 0

    def emit(table: pa.Table) -> None:
        nonlocal parts
        part = pa.array(np.full(table.num_rows, parts, np.int32))
        writer.write_table(pa.Table.from_arrays([part, *table.columns], schema=PLAN), row_group_size=table.num_rows)
        parts += 1

    for t in tables:
        rows += t.num_rows
        pending.append(t)
        held += t.num_rows
        while held >= rows_per_partition:
            whole = pa.concat_tables(pending)
            emit(whole.slice(0, rows_per_partition))
            pending, held = [whole.slice(rows_per_partition)], held - rows_per_partition
    if held:
        emit(pa.concat_tables(pending))
    return rows, parts


def make_plan(run: str, source: Source, rows_per_partition: int, client=None) -> dict:
    """List `source` and write its plan (or reuse a complete one); returns the plan summary.

    With `client`, a folder tree is listed by tasks on its workers; without, by the same code here."""
    layout = RunLayout(run)
    with contextlib.suppress(FileNotFoundError):  # one read, not an existence check and a read
        return storage.read_json(layout.plan_marker(source.name))
    t0 = time.perf_counter()
    stats = PlanStats()
    fs, path = storage.fs_path(layout.plan(source.name))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    work = layout.url("plan", f"{source.name}.work")
    storage.remove(work)  # chunks of an interrupted plan
    tables = get_reader(source.format).plan_streamed(source, stats)
    if tables is None:
        tables = _listed(source, stats, work, client)
    tmp = f"{path}.tmp-plan"
    with fs.open(tmp, "wb") as f, pq.ParquetWriter(f, PLAN, compression="zstd") as writer:
        stats.images, n_parts = write_partitions(writer, tables, rows_per_partition)
    fs.mv(tmp, path)
    storage.remove(work)
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
