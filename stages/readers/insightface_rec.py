"""insightface RecordIO datasets (MS1MV3, Glint360K, …): `train.rec` + `train.idx`, no mxnet.

The plan stores each image record's byte offset, so a worker seeks straight to its partition and
reads nothing else. For RecordIO rows, ingest's `offset` is the record's offset in the `.rec` (the
payload of a multi-part record is not contiguous) and `record_index` its `.idx` key.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pltd.schemas import OPT_VECTOR, image_id
from pltd.stages.problems import RowProblem
from pltd.stages.readers.base import PLAN_ITEMS, PlanStats, Reader, ReaderOptions, Source, SourceError, register
from pltd.stages.readers.rows import Rows, verify_image
from pltd.stages.recordio import RecordError, read_record, unpack


class RecOptions(ReaderOptions):
    prefix: str = "train"  # <root>/<prefix>.rec and <root>/<prefix>.idx


def rec_paths(source: Source) -> tuple[str, str]:
    _, root = source.fs()
    p = source.options.prefix
    return posixpath.join(root, f"{p}.rec"), posixpath.join(root, f"{p}.idx")


def record_label(header) -> str:
    """The identity of an image record: its scalar label, or the first of its labels."""
    label = header.label[0] if isinstance(header.label, tuple) else header.label
    return str(int(label))


@register
class InsightfaceRecReader(Reader):
    format = "insightface_rec"
    Options = RecOptions

    def check(self, source: Source) -> None:
        super().check(source)
        fs, _ = source.fs()
        for path in rec_paths(source):
            if not fs.exists(path):
                raise SourceError(f"source {source.name!r} (insightface_rec): {path} does not exist")

    def plan_streamed(self, source: Source, stats: PlanStats) -> Iterator[pa.Table]:
        """The `.idx` read twice in blocks (checks and the header record, then the rows), never whole:
        the driver holds one block (~16 B a record while parsed), not ~200 B a record."""
        fs, _ = source.fs()
        rec, idx = rec_paths(source)
        header_offset, records = _check_idx(source, fs, idx)
        if not records:
            raise SourceError(f"source {source.name!r}: {idx} lists no records")
        n = m = None
        if header_offset is not None:
            # insightface header record: labels [n, m] → images are 1..n-1, identities n..m-1
            try:
                with fs.open(rec, "rb") as f:
                    header, _ = unpack(read_record(f, header_offset, fs.size(rec)))
            except RecordError as exc:
                raise SourceError(f"source {source.name!r}: {rec}: header record 0 unreadable: {exc}") from None
            if header.flag > 0:
                n, m = int(header.label[0]), int(header.label[1])
        return _idx_rows(source, fs, idx, stats, n, m)

    def read(self, source: Source, plan: pa.Table, settings) -> tuple[pa.Table, pa.Table]:
        fs, _ = source.fs()
        rec, _ = rec_paths(source)
        rec_url = source.url(f"{source.options.prefix}.rec")
        rows = Rows(source)
        size = fs.size(rec)
        with fs.open(rec, "rb") as f:
            for item, offset in zip(plan.column("item").to_pylist(), plan.column("offset").to_pylist(), strict=True):
                key = int(item)
                iid = image_id(source.name, f"rec:{key}")
                try:
                    header, payload = unpack(read_record(f, offset, size))
                    meta = verify_image(payload, settings)
                except RowProblem as exc:
                    rows.reject(iid, exc.reason, f"record {key} at byte {offset}: {exc.detail}", rec_url, key)
                    continue
                rows.accept_image(
                    iid, rec_url, len(payload), meta, source_label=record_label(header), record_index=key, offset=offset
                )
        return rows.tables()


IDX_BLOCK = 1 << 22  # bytes of `.idx` parsed at a time (~250 K records)


def idx_blocks(source: Source, fs, idx: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, offsets) of a `.idx` ("key<TAB>offset" lines) block by block, parsed by pyarrow's CSV reader."""
    from pyarrow import csv

    opts = {
        "read_options": csv.ReadOptions(column_names=["key", "offset"], block_size=IDX_BLOCK),
        "parse_options": csv.ParseOptions(delimiter="\t"),
        "convert_options": csv.ConvertOptions(column_types={"key": pa.int64(), "offset": pa.int64()}),
    }
    try:
        with fs.open(idx, "rb") as f:
            for batch in csv.open_csv(f, **opts):
                yield batch.column(0).to_numpy(), batch.column(1).to_numpy()
    except (pa.ArrowInvalid, ValueError) as exc:
        raise SourceError(f"source {source.name!r}: {idx}: expected 'key<TAB>offset' lines: {exc}") from None


def _check_idx(source: Source, fs, idx: str) -> tuple[int | None, int]:
    """First pass: (offset of key 0 or None, records); a key listed twice stops the build at start-up.
    Keys written in increasing order (as insightface's tools write them) are checked as they stream
    by; otherwise every key is held once, 8 B each, to count them."""
    header, records, last, increasing = None, 0, -(2**63), True
    for keys, offsets in idx_blocks(source, fs, idx):
        if not keys.size:
            continue
        records += keys.size
        increasing = increasing and keys[0] > last and bool(np.all(np.diff(keys) > 0))
        last = keys[-1]
        zero = np.flatnonzero(keys == 0)
        if header is None and zero.size:
            header = int(offsets[zero[0]])
    if not increasing:
        keys = np.concatenate([k for k, _ in idx_blocks(source, fs, idx)])
        values, counts = np.unique(keys, return_counts=True)
        if counts.max() > 1:
            i = int(np.argmax(counts))
            raise SourceError(f"source {source.name!r}: {idx}: key {values[i]} appears {counts[i]} times")
    return header, records


def _idx_rows(source: Source, fs, idx: str, stats: PlanStats, n: int | None, m: int | None) -> Iterator[pa.Table]:
    """Second pass: the image records' plan rows, block by block, in `.idx` order."""
    for keys, offsets in idx_blocks(source, fs, idx):
        if n is not None:
            skipped = keys[(keys == 0) | ((keys >= n) & (keys < m))]
            if skipped.size:
                stats.ignore_many("rec_header_or_identity_record", int(skipped.size), [str(k) for k in skipped[:5]])
            image = (keys >= 1) & (keys < n)
            keys, offsets = keys[image], offsets[image]
        k = len(keys)
        items = pc.cast(pa.array(keys, pa.int64()), pa.string())
        yield pa.table([items, pa.array(offsets, pa.int64()), pa.nulls(k, pa.string()), pa.nulls(k, OPT_VECTOR)],
                       schema=PLAN_ITEMS)  # fmt: skip
