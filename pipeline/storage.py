"""Idempotent partition files: write to a temporary name, rename, completion marker last.

Works on any fsspec filesystem; on object stores without atomic rename the marker alone decides
completeness, so a half-written file never counts.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pltd import __version__
from pltd.schemas import SCHEMA_VERSION


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
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def remove_stale_temporaries(url: str) -> int:
    """Delete `*.tmp-*` files a killed run left under `url`; returns how many."""
    stale = [u for u in find(url) if ".tmp-" in posixpath.basename(u)]
    for u in stale:
        remove(u)
    return len(stale)


def find(url: str) -> list[str]:
    """Every file under `url`, recursively, as URLs; [] if there is no such folder (one listing)."""
    fs, path = fs_path(url)
    try:
        found = fs.find(path, withdirs=False)
    except FileNotFoundError:
        return []
    return [_url_of(fs, url, p) for p in found]


def list_names(url: str) -> list[str]:
    """Names of the entries of one folder; [] if there is no such folder (one listing)."""
    fs, path = fs_path(url)
    try:
        return [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def read_jsons(urls: list[str]) -> list[Any]:
    """Many small JSON files in one call (fetched concurrently on object stores)."""
    if not urls:
        return []
    fs, _ = fs_path(urls[0])
    paths = [fs_path(u)[1] for u in urls]
    blobs = fs.cat(paths)
    return [json.loads(blobs[p]) for p in paths]


def _url_of(fs: fsspec.AbstractFileSystem, url: str, path: str) -> str:
    """A path `fs` returned, in the form `url` was given (local path, or protocol://)."""
    return fs.unstrip_protocol(path) if "://" in url else path


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = fs_path(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)
