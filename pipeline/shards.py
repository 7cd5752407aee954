"""PLTD shards: the assemble stage's per-partition files re-cut into shards of a set size.

The plan comes from Parquet footers only (rows, bytes per staging file) in a fixed order —
sources as in the manifest, partitions by number — so shard contents are deterministic; each
shard is then written by its own task (`RUN/pltd/part-NNNNN.parquet`, row groups of
`row_group_rows`), through a temporary name.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout

Piece = tuple[str, int, int]  # staging file, first row, end row


def shard_plan(
    files: list[tuple[str, int, int]], rows_per_shard: int, bytes_per_shard: int | None
) -> list[list[Piece]]:
    """files: (url, rows, bytes) in order → shards as lists of row ranges."""
    shards: list[list[Piece]] = []
    current: list[Piece] = []
    rows = size = 0
    for url, n, nbytes in files:
        per_row = nbytes / max(n, 1)
        start = 0
        while start < n:
            room = rows_per_shard - rows
            if bytes_per_shard:
                room = min(room, max(1, int((bytes_per_shard - size) / max(per_row, 1))))
            take = min(room, n - start)
            current.append((url, start, start + take))
            rows += take
            size += take * per_row
            start += take
            if rows >= rows_per_shard or (bytes_per_shard and size >= bytes_per_shard):
                shards.append(current)
                current, rows, size = [], 0, 0
    if current:
        shards.append(current)
    return shards


def write_shard(url: str, pieces: list[Piece], schema: pa.Schema, row_group_rows: int, metadata: dict) -> dict:
    tables = [storage.read_table(src).slice(a, b - a) for src, a, b in pieces]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    written = storage.write_parquet(url, table.cast(schema), metadata, row_group_rows=row_group_rows)
    return {"shard": url.rsplit("/", 1)[-1], **written}  # rows, bytes, sha256: `pltd verify` checks them


def staging_files(layout: RunLayout, parts: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(url, rows, bytes) of the assemble stage's file of each (source, partition), from its footer."""
    out = []
    for source, p in parts:
        url = layout.output("assemble", source, p)
        fs, path = storage.fs_path(url)
        with fs.open(path, "rb") as f:
            n = pq.ParquetFile(f).metadata.num_rows
            out.append((url, n, f.size))
    return out
