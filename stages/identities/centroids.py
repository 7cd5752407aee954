"""Per-identity centroids as a distributed reduction (Algorithm 2, step 2).

Each partition contributes per-(source, source_label) sums of its normalised embeddings and their
counts; partial tables are added pairwise (a tree, on the workers); the centroid is the total sum
re-normalised. Per-image vectors never leave their partition.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pltd.vectors import l2_normalize

SUMS = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("source_label", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("sum_0", pa.list_(pa.float32())),
        pa.field("sum_1", pa.list_(pa.float32())),
    ]
)


def matrix(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list<float32> column of equal-length vectors as an (n, d) array, without Python loops."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, 0), np.float32)
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(arr), -1)


def vectors(m: np.ndarray) -> pa.Array:
    """An (n, d) array as a list<float32> column."""
    m = np.ascontiguousarray(m, np.float32)
    offsets = np.arange(len(m) + 1, dtype=np.int32) * m.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(m.reshape(-1)))


def _group(t: pa.Table, counts: np.ndarray, columns: tuple[str, str]) -> pa.Table:
    """Sum `counts` and the two vector columns per (source, source_label)."""
    keys = pc.binary_join_element_wise(t.column("source"), t.column("source_label"), "\x00")
    uniq, inverse = np.unique(np.asarray(keys.to_pylist(), dtype=object), return_inverse=True)
    total = np.zeros(len(uniq), np.int64)
    np.add.at(total, inverse, counts)
    sums = []
    for col in columns:
        m = matrix(t.column(col))
        acc = np.zeros((len(uniq), m.shape[1]), np.float64)
        np.add.at(acc, inverse, m)
        sums.append(acc.astype(np.float32))
    src, lab = zip(*(u.split("\x00", 1) for u in uniq), strict=True)
    return pa.table(
        {"source": list(src), "source_label": list(lab), "count": total, "sum_0": vectors(sums[0]),
         "sum_1": vectors(sums[1])},
        schema=SUMS,
    )  # fmt: skip


def partial_sums(emb: pa.Table) -> pa.Table:
    """Sums and counts per identity of one partition's embeddings."""
    if emb.num_rows == 0:
        return SUMS.empty_table()
    return _group(emb, np.ones(emb.num_rows, np.int64), ("emb_0", "emb_1"))


def combine(a: pa.Table, b: pa.Table) -> pa.Table:
    """Add two partial-sum tables (an identity may appear in both)."""
    both = pa.concat_tables([a, b])
    if both.num_rows == 0:
        return both
    return _group(both, both.column("count").to_numpy(), ("sum_0", "sum_1"))


def normalise(m: np.ndarray) -> np.ndarray:
    return l2_normalize(m, axis=1)


def sorted_sums(sums: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Keys (source, source_label, count) sorted, and the two networks' raw sums in that order."""
    order = pc.sort_indices(sums, sort_keys=[("source", "ascending"), ("source_label", "ascending")])
    sums = sums.take(order)
    return sums.select(["source", "source_label", "count"]), matrix(sums.column("sum_0")), matrix(sums.column("sum_1"))
