"""RecordIO written byte for byte per dmlc-core, read back without mxnet."""

from __future__ import annotations

import io
import struct

import pytest

from pltd.stages.recordio import MAGIC, RecordError, RecordWriter, pack, read_idx, read_record, unpack


def write(records: dict[int, bytes]) -> tuple[bytes, str]:
    rec, idx = io.BytesIO(), io.BytesIO()
    w = RecordWriter(rec, idx)
    for k, data in records.items():
        w.write(k, data)
    return rec.getvalue(), idx.getvalue().decode()


def test_single_record_bytes_match_the_format():
    data = pack(3.0, b"abc", id_=7)
    assert data == struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"abc"
    rec, idx = write({1: data})
    expected = struct.pack("<II", MAGIC, 27) + data + b"\x00"  # 24 + 3 bytes, padded to 28
    assert rec == expected
    assert idx == "1\t0\n"


def test_label_vector_header_round_trip():
    header, payload = unpack(pack([5.0, 9.0], b"xyz"))
    assert header.flag == 2 and header.label == (5.0, 9.0) and payload == b"xyz"


def test_magic_inside_payload_splits_into_parts_and_reads_back():
    magic = struct.pack("<I", MAGIC)
    data = pack(1.0, b"abcd" + magic + b"efgh" + magic + b"ij")  # magic at aligned offsets 28 and 36
    rec, _ = write({0: data})
    flags = []
    pos = 0
    while pos < len(rec):
        m, lrec = struct.unpack_from("<II", rec, pos)
        assert m == MAGIC
        n = lrec & ((1 << 29) - 1)
        flags.append(lrec >> 29)
        pos += 8 + n + (4 - n % 4) % 4
    assert flags == [1, 2, 3]
    assert read_record(io.BytesIO(rec), 0, len(rec)) == data


def test_offsets_from_idx_reach_each_record():
    recs = {k: pack(float(k), bytes([k]) * (k + 5)) for k in range(1, 6)}
    rec, idx = write(recs)
    for key, offset in read_idx(idx):
        header, payload = unpack(read_record(io.BytesIO(rec), offset, len(rec)))
        assert header.label == float(key) and payload == bytes([key]) * (key + 5)


def test_truncated_record_is_reported():
    rec, _ = write({1: pack(1.0, b"x" * 100)})
    cut = rec[:60]
    with pytest.raises(RecordError) as exc:
        read_record(io.BytesIO(cut), 0, len(cut))
    assert exc.value.reason == "truncated_record"


def test_offset_past_end_is_reported():
    rec, _ = write({1: pack(1.0, b"x")})
    with pytest.raises(RecordError) as exc:
        read_record(io.BytesIO(rec), len(rec) + 100, len(rec))
    assert exc.value.reason == "offset_past_eof"


def test_offset_into_the_middle_of_a_record_is_bad_magic():
    rec, _ = write({1: pack(1.0, b"y" * 40)})
    with pytest.raises(RecordError) as exc:
        read_record(io.BytesIO(rec), 8, len(rec))
    assert exc.value.reason == "bad_record_magic"


def test_malformed_idx_line_names_the_line():
    with pytest.raises(ValueError, match="line 2"):
        read_idx("1\t0\nnot a line\n")
