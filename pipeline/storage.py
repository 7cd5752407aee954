"""Idempotent partition files: write to a temporary name, rename, completion marker last.

Works on any fsspec filesystem; on object stores without atomic rename the marker alone decides
completeness, so a half-written file never counts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pltd import __version__
from pltd.pipeline import isolate
from pltd.schemas import SCHEMA_VERSION


def fs_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url)


def join(url: str, *parts: str) -> str:
    return posixpath.join(url.rstrip("/"), *parts)


class NoSpaceError(OSError):
    """A write that found the disk (or quota) full; `filename` is the file that could not be written."""


def checksum(data: bytes) -> str:
    """The file checksum markers carry: SHA-256 (hashlib; hardware-accelerated on current CPUs)."""
    return hashlib.sha256(data).hexdigest()


def file_checksum(url: str, chunk: int = 1 << 22) -> tuple[int, str]:
    """(bytes, checksum) of a stored file, read in chunks."""
    fs, path = fs_path(url)
    h, n = hashlib.sha256(), 0
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            n += len(block)
    return n, h.hexdigest()


def write_parquet(
    url: str, table: pa.Table, metadata: dict[str, str] | None = None, row_group_rows: int = 1000
) -> dict[str, Any]:
    """Write `table` to `url` through a temporary name and a rename; returns its rows, bytes and checksum.

    The file is encoded in memory first (partitions and shards are tens of MB at most), so its
    checksum costs no second read; a failed write removes its temporary file and a full disk raises
    `NoSpaceError` naming `url`.
    """
    meta = dict(table.schema.metadata or {})
    meta.update({b"pltd.schema_version": SCHEMA_VERSION.encode(), b"pltd.version": __version__.encode()})
    for k, v in (metadata or {}).items():
        meta[f"pltd.{k}".encode()] = str(v).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_rows, compression="zstd")
    data = buf.getvalue()
    put_bytes(url, data)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": checksum(data)}


def put_bytes(url: str, data: bytes) -> None:
    """`data` to `url` through a temporary name and a rename; nothing is left behind on failure."""
    fs, path = fs_path(url)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.rm(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(exc.errno, "no space left on device", url) from None
        raise


def write_json(url: str, obj: Any) -> None:
    put_bytes(url, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


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


def list_sizes(url: str) -> dict[str, int]:
    """Name → size of the files of one folder; {} if there is no such folder (one listing)."""
    fs, path = fs_path(url)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return {}
    return {posixpath.basename(e["name"].rstrip("/")): e["size"] for e in entries if e["type"] == "file"}


def read_jsons(urls: list[str]) -> list[Any]:
    """Many small JSON files in one call (fetched concurrently on object stores)."""
    if not urls:
        return []
    fs, _ = fs_path(urls[0])
    paths = [fs_path(u)[1] for u in urls]
    blobs = fs.cat(paths)
    return [json.loads(blobs[p]) for p in paths]


FOOTER_TAIL = 1 << 16  # bytes read from each file's end: a footer of a few row groups fits


def footers(urls: list[str]) -> list[pq.FileMetaData]:
    """The Parquet footers of many files in batched range requests (`cat_ranges`, concurrent on object
    stores): each file's last FOOTER_TAIL bytes, then the whole footer of the few that are longer."""
    if not urls:
        return []
    fs, _ = fs_path(urls[0])
    paths = [fs_path(u)[1] for u in urls]
    tails = fs.cat_ranges(paths, [-FOOTER_TAIL] * len(paths), [None] * len(paths))
    longer = [i for i, t in enumerate(tails) if _footer_length(t, urls[i]) + 8 > len(t)]
    if longer:
        starts = [-(_footer_length(tails[i], urls[i]) + 8) for i in longer]
        fulls = fs.cat_ranges([paths[i] for i in longer], starts, [None] * len(longer))
        for i, full in zip(longer, fulls, strict=True):
            tails[i] = full
    return [pq.read_metadata(pa.BufferReader(t)) for t in tails]


def _footer_length(tail: bytes, url: str) -> int:
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        raise OSError(f"{url}: not a Parquet file (no PAR1 footer)")
    return int.from_bytes(tail[-8:-4], "little")


def _url_of(fs: fsspec.AbstractFileSystem, url: str, path: str) -> str:
    """A path `fs` returned, in the form `url` was given (local path, or protocol://)."""
    return fs.unstrip_protocol(path) if "://" in url else path


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file; inside a runner task on part of a partition, only that part's rows."""
    fs, path = fs_path(url)
    with fs.open(path, "rb") as f:
        return isolate.restrict(pq.read_table(f, columns=columns))
