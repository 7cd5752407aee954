"""Idempotent partition files: write to a temporary name, rename, completion marker last.

Works on any fsspec filesystem; on object stores without atomic rename the marker alone decides
completeness, so a half-written file never counts.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pltd import __version__
from pltd.schemas import SCHEMA_VERSION


def part_name(part: int) -> str:
    return f"part-{part:05d}"


def fs_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url)


def join(url: str, *parts: str) -> str:
    return posixpath.join(url.rstrip("/"), *parts)


def write_parquet(url: str, table: pa.Table, metadata: dict[str, str] | None = None, row_group_rows: int = 1000):
    """Write `table` to `url` through a temporary name and a rename."""
    fs, path = fs_path(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    meta = dict(table.schema.metadata or {})
    meta.update({b"pltd.schema_version": SCHEMA_VERSION.encode(), b"pltd.version": __version__.encode()})
    for k, v in (metadata or {}).items():
        meta[f"pltd.{k}".encode()] = str(v).encode()
    table = table.replace_schema_metadata(meta)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f, row_group_size=row_group_rows, compression="zstd")
    fs.mv(tmp, path)


def write_json(url: str, obj: Any) -> None:
    fs, path = fs_path(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    fs.mv(tmp, path)


def read_json(url: str) -> Any:
    fs, path = fs_path(url)
    with fs.open(path, "r") as f:
        return json.load(f)


def exists(url: str) -> bool:
    fs, path = fs_path(url)
    return fs.exists(path)


def remove(url: str) -> None:
    fs, path = fs_path(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def remove_stale_temporaries(url: str) -> int:
    """Delete `*.tmp-*` files a killed run left under `url`; returns how many."""
    fs, path = fs_path(url)
    if not fs.exists(path):
        return 0
    stale = [p for p in fs.find(path) if ".tmp-" in posixpath.basename(p)]
    for p in stale:
        fs.rm(p)
    return len(stale)


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = fs_path(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def read_tables(urls: list[str], schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    tables = [read_table(u, columns) for u in urls]
    if not tables:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return pa.concat_tables(tables)
