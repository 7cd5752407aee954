"""Duplicate identities (Algorithm 2, steps 3–5): FAISS range search, two-network agreement, merging.

Centroids are L2-normalised, so inner product = cosine. Network 0 proposes candidate pairs by range
search above its threshold; a candidate is a duplicate only if network 1's cosine also exceeds its
threshold (both networks must agree, and checking network 1 on the candidates alone gives exactly
that intersection). Cross-dataset pairs are always searched (the larger dataset is indexed, the
smaller one queries it); pairs within a dataset only when asked. Up to `exact_index_max` indexed
vectors the index is exact (IndexFlatIP); beyond, an IVF index (IndexIVFFlat, nlist ≈ 4·sqrt(n),
`nprobe` lists searched) trades a little recall for speed — `benchmarks/dedup.py` measures it.
Merging is transitive: connected components of the agreed pairs (scipy's csgraph).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class DedupSettings:
    thresholds: tuple[float, float]
    within_dataset: bool = False
    exact_index_max: int = 200_000
    nprobe: int = 32
    query_batch: int = 16_384


def _index(xb: np.ndarray, s: DedupSettings):
    import faiss

    d = xb.shape[1]
    if len(xb) <= s.exact_index_max:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(len(xb)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = xb[rng.choice(len(xb), min(len(xb), nlist * 40), replace=False)]
        index.train(train)
        index.nprobe = s.nprobe
    index.add(xb)
    return index


def range_pairs(xq: np.ndarray, xb: np.ndarray, threshold: float, s: DedupSettings) -> tuple[np.ndarray, ...]:
    """All (query row, base row, cosine) with cosine > threshold."""
    index = _index(np.ascontiguousarray(xb, np.float32), s)
    qi, bi, sim = [], [], []
    for start in range(0, len(xq), s.query_batch):
        q = np.ascontiguousarray(xq[start : start + s.query_batch], np.float32)
        lims, dist, ids = index.range_search(q, float(threshold))
        counts = np.diff(lims).astype(np.int64)
        qi.append(np.repeat(np.arange(start, start + len(q)), counts))
        bi.append(ids.astype(np.int64))
        sim.append(dist)
    if not qi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(qi), np.concatenate(bi), np.concatenate(sim)


def agreed_pairs(
    x0: np.ndarray, x1: np.ndarray, dataset: np.ndarray, s: DedupSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) both networks call duplicates: cross-dataset, plus within-dataset if asked."""
    t0, t1 = s.thresholds
    groups = sorted(set(dataset.tolist()))
    found_i, found_j = [], []
    for a_pos, a in enumerate(groups):
        for b in groups[a_pos:]:
            if a == b and not s.within_dataset:
                continue
            ia, ib = np.flatnonzero(dataset == a), np.flatnonzero(dataset == b)
            q, base = (ia, ib) if len(ia) <= len(ib) else (ib, ia)
            qi, bi, _ = range_pairs(x0[q], x0[base], t0, s)
            i, j = q[qi], base[bi]
            if a == b:
                keep = i < j  # each within-dataset pair once, no self-pairs
                i, j = i[keep], j[keep]
            found_i.append(np.minimum(i, j))
            found_j.append(np.maximum(i, j))
    if not found_i:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32), np.zeros(0, np.float32)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    sim0 = np.einsum("nd,nd->n", x0[i], x0[j])
    sim1 = np.einsum("nd,nd->n", x1[i], x1[j])
    agree = sim1 > t1
    return i[agree], j[agree], sim0[agree], sim1[agree]


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of n nodes given edges (i, j): transitive merging."""
    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def contiguous_ids(labels: np.ndarray) -> np.ndarray:
    """Renumber component labels 0..K-1 by the first row of each component.

    Rows come sorted by (source, source_label), so a merged identity takes the id of its smallest
    key: the same input always gives the same ids.
    """
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first, kind="stable")
    remap = np.empty(len(order), np.int64)
    remap[order] = np.arange(len(order))
    return remap[np.searchsorted(np.unique(labels), labels)]


def nearest_other(x: np.ndarray, dataset: np.ndarray) -> np.ndarray:
    """Each row's highest cosine to a row of another dataset (for the report's histograms)."""
    import faiss

    best = np.full(len(x), -1.0, np.float32)
    for a in set(dataset.tolist()):
        inside, outside = np.flatnonzero(dataset == a), np.flatnonzero(dataset != a)
        if len(outside) == 0:
            continue
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(np.ascontiguousarray(x[outside], np.float32))
        dist, _ = index.search(np.ascontiguousarray(x[inside], np.float32), 1)
        best[inside] = dist[:, 0]
    return best
