"""insightface RecordIO datasets (MS1MV3, Glint360K, …): `train.rec` + `train.idx`, no mxnet.

The plan stores each image record's byte offset, so a worker seeks straight to its partition and
reads nothing else. For RecordIO rows, ingest's `offset` is the record's offset in the `.rec` (the
payload of a multi-part record is not contiguous) and `record_index` its `.idx` key.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa

from pltd.schemas import image_id
from pltd.stages.problems import RowProblem
from pltd.stages.readers.base import PlanStats, Reader, ReaderOptions, Source, SourceError, register
from pltd.stages.readers.rows import Rows, verify_image
from pltd.stages.recordio import RecordError, read_idx, read_record, unpack


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

    def plan_items(self, source: Source, stats: PlanStats) -> Iterator[dict]:
        fs, _ = source.fs()
        rec, idx = rec_paths(source)
        with fs.open(idx, "rt") as f:
            try:
                entries = read_idx(f.read())
            except ValueError as exc:
                raise SourceError(f"source {source.name!r}: {idx}: {exc}") from None
        if not entries:
            raise SourceError(f"source {source.name!r}: {idx} lists no records")
        offsets = dict(entries)
        if len(offsets) != len(entries):
            counts = Counter(k for k, _ in entries)
            key, n = counts.most_common(1)[0]
            raise SourceError(f"source {source.name!r}: {idx}: key {key} appears {n} times")
        size = fs.size(rec)
        image_keys = [k for k, _ in entries]
        if 0 in offsets:
            # insightface header record: labels [n, m] → images are 1..n-1, identities n..m-1
            try:
                with fs.open(rec, "rb") as f:
                    header, _ = unpack(read_record(f, offsets[0], size))
            except RecordError as exc:
                raise SourceError(f"source {source.name!r}: {rec}: header record 0 unreadable: {exc}") from None
            if header.flag > 0:
                n, m = int(header.label[0]), int(header.label[1])
                image_keys = [k for k in image_keys if 1 <= k < n]
                for k, _ in entries:
                    if k == 0 or n <= k < m:
                        stats.ignore("rec_header_or_identity_record", str(k))
        for k in image_keys:
            yield {"item": str(k), "offset": offsets[k], "label": None, "bbox": None}

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
