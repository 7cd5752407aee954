"""insightface / MXNet RecordIO (`train.rec` + `train.idx`) without mxnet.

Format (dmlc-core `recordio.h`): each record is ``magic:u32 lrecord:u32 data pad``, little-endian,
``magic = 0xced7230a``, length = ``lrecord & (2**29 - 1)``, continuation flag = ``lrecord >> 29``
(0 whole, 1 first, 2 middle, 3 last part), data padded to 4 bytes. The writer splits a record
wherever the magic number appears at a 4-byte-aligned position of the data and drops it; the reader
puts it back. An image record's data starts with an IRHeader ``struct 'IfQQ'`` (flag, label, id,
id2); when ``flag > 0``, ``flag`` float32 labels follow, then the encoded image.

insightface datasets (MS1MV3 …): record 0 is a header whose labels are ``[n, m]``: images are
records ``1 .. n-1`` and records ``n .. m-1`` describe identities, each with labels
``[first_image, end_image)``. The `.idx` file is text, ``key\\toffset`` per line.

Written by hand because the only implementation is inside mxnet (unmaintained, not installable
with numpy 2 or Python 3.11 wheels); reading by byte offset lets each worker read only its part.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from pltd.stages.problems import RowProblem

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_MASK = (1 << 29) - 1
_IRHEADER = struct.Struct("<IfQQ")


class RecordError(RowProblem):
    """A record that cannot be read; `reason` is the rejection reason."""


@dataclass(frozen=True)
class IRHeader:
    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def read_record(f: BinaryIO, offset: int, file_size: int) -> bytes:
    """Read the (possibly multi-part) record starting at `offset`."""
    if offset < 0 or offset + 8 > file_size:
        raise RecordError("offset_past_eof", f"offset {offset} with file size {file_size}")
    f.seek(offset)
    parts: list[bytes] = []
    pos = offset
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise RecordError("truncated_record", f"header at byte {pos} cut by end of file")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordError("bad_record_magic", f"0x{magic:08x} at byte {pos}, expected 0x{MAGIC:08x}")
        length, cflag = lrec & _LEN_MASK, lrec >> 29
        if pos + 8 + length > file_size:
            raise RecordError("truncated_record", f"record at byte {pos} declares {length} bytes past end of file")
        data = f.read(length)
        if len(data) < length:
            raise RecordError("truncated_record", f"record at byte {pos}: {len(data)} of {length} bytes")
        f.seek((4 - length % 4) % 4, 1)
        pos += 8 + length + (4 - length % 4) % 4
        if not parts and cflag not in (0, 1):
            raise RecordError("bad_record_magic", f"record at byte {offset} starts with continuation flag {cflag}")
        parts.append(data)
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts)
        if pos + 8 > file_size:
            raise RecordError("truncated_record", f"multi-part record at byte {offset} cut by end of file")


def unpack(record: bytes) -> tuple[IRHeader, bytes]:
    """Split a record's data into its IRHeader and payload (mx.recordio.unpack)."""
    if len(record) < _IRHEADER.size:
        raise RecordError("truncated_record", f"{len(record)} bytes, shorter than an IRHeader")
    flag, label, id_, id2 = _IRHEADER.unpack_from(record)
    body = record[_IRHEADER.size :]
    if flag > 0:
        if len(body) < 4 * flag:
            raise RecordError("truncated_record", f"header announces {flag} labels, record too short")
        labels = tuple(float(x) for x in np.frombuffer(body[: 4 * flag], dtype="<f4"))
        return IRHeader(flag, labels, id_, id2), body[4 * flag :]
    return IRHeader(flag, label, id_, id2), body


def pack(label: float | Iterable[float], payload: bytes, id_: int = 0, id2: int = 0) -> bytes:
    """Build a record's data from a label (scalar or list) and payload (mx.recordio.pack)."""
    if isinstance(label, int | float):
        return _IRHEADER.pack(0, float(label), id_, id2) + payload
    labels = np.asarray(list(label), dtype="<f4")
    return _IRHEADER.pack(len(labels), 0.0, id_, id2) + labels.tobytes() + payload


def read_idx(text: str) -> list[tuple[int, int]]:
    """Parse a `.idx` file into (key, offset) pairs in file order; bad lines raise ValueError."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"line {n}: expected 'key<TAB>offset', got {line[:60]!r}")
        out.append((int(fields[0]), int(fields[1])))
    return out


class RecordWriter:
    """Write records and the matching `.idx` byte for byte as MXIndexedRecordIO does."""

    def __init__(self, rec: BinaryIO, idx: BinaryIO):
        self.rec, self.idx = rec, idx

    def write(self, key: int, data: bytes) -> int:
        offset = self.rec.tell()
        self.idx.write(f"{key}\t{offset}\n".encode())
        cuts = [i for i in range(0, len(data) - 3, 4) if data[i : i + 4] == _MAGIC_BYTES]
        starts, ends = [0, *(c + 4 for c in cuts)], [*cuts, len(data)]
        for n, (a, b) in enumerate(zip(starts, ends, strict=True)):
            cflag = 0 if len(starts) == 1 else 1 if n == 0 else 3 if n == len(starts) - 1 else 2
            self.rec.write(struct.pack("<II", MAGIC, (cflag << 29) | (b - a)))
            self.rec.write(data[a:b])
            self.rec.write(b"\x00" * ((4 - (b - a) % 4) % 4))
        return offset
