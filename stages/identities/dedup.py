"""Duplicate identities (Algorithm 2, steps 3–5): k-NN search above a threshold, agreement, merging.

Centroids are L2-normalised, so inner product = cosine. Network 0 proposes candidate pairs: every
pair above its threshold, found by k nearest neighbours (`search.knn_above`: exact flat index up to
`exact_index_max` rows, IVF-Flat above, faiss-gpu fp16 with fp32 re-scoring on a GPU). A candidate
is a duplicate only if network 1's cosine also exceeds its threshold (checking network 1 on the
candidates alone gives exactly the intersection of the two networks' pair sets). When both
networks are the same model (`one_network`), the rule is network 0's threshold alone, and says so.
Cross-dataset pairs are always searched (the larger dataset is indexed, the smaller one queries
it); pairs within a dataset only when asked. The same search gives each query identity its best
cosine in the other dataset (the report's histogram). Merging is transitive: connected components
of the agreed pairs (scipy's csgraph).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pltd.stages.identities.search import SearchSettings, knn_above


@dataclass(frozen=True)
class DedupSettings:
    thresholds: tuple[float, float]
    within_dataset: bool = False
    search: SearchSettings = field(default_factory=SearchSettings)
    one_network: bool = False  # both networks are the same model: network 0's threshold decides


@dataclass
class Agreed:
    i: np.ndarray  # pairs i < j both networks call duplicates
    j: np.ndarray
    sim0: np.ndarray
    sim1: np.ndarray
    best0: np.ndarray  # per row: best cosine (network 0) to another dataset, NaN where the row never queried
    best1: np.ndarray  # per row: network 1's cosine to that same neighbour
    pairs_compared: int  # cross-dataset (and within, if asked) pairs the search covers
    widened: int  # queries asked again with a larger k
    index: str


def agreed_pairs(x0: np.ndarray, x1: np.ndarray, dataset: np.ndarray, s: DedupSettings) -> Agreed:
    """Pairs (i < j) both networks call duplicates: cross-dataset, plus within-dataset if asked."""
    t0, t1 = s.thresholds
    n = len(x0)
    best0, best1 = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    found_i, found_j, compared, widened, kinds = [], [], 0, 0, set()
    groups = sorted(set(dataset.tolist()))
    for a_pos, a in enumerate(groups):
        for b in groups[a_pos:]:
            if a == b and not s.within_dataset:
                continue
            ia, ib = np.flatnonzero(dataset == a), np.flatnonzero(dataset == b)
            q, base = (ia, ib) if len(ia) <= len(ib) else (ib, ia)
            nb = knn_above(x0[q], x0[base], t0, s.search, self_query=a == b)
            i, j = q[nb.qi], base[nb.bi]
            widened, kinds = widened + nb.widened, kinds | {nb.index}
            if a == b:
                keep = i < j  # each within-dataset pair once
                i, j = i[keep], j[keep]
                compared += len(q) * (len(q) - 1) // 2
            else:
                compared += len(q) * len(base)
                has = nb.best_id >= 0
                better = has & ~(best0[q] >= nb.best)  # NaN (not yet set) compares False
                rows, other = q[better], base[nb.best_id[better]]
                best0[rows] = nb.best[better]
                best1[rows] = np.einsum("nd,nd->n", x1[rows], x1[other])
            found_i.append(np.minimum(i, j))
            found_j.append(np.maximum(i, j))
    if not found_i:
        e = np.zeros(0, np.int64)
        return Agreed(e, e, np.zeros(0, np.float32), np.zeros(0, np.float32), best0, best1, 0, 0, "none")
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    sim0 = np.einsum("nd,nd->n", x0[i], x0[j])
    sim1 = np.einsum("nd,nd->n", x1[i], x1[j])
    agree = np.ones(len(i), bool) if s.one_network else sim1 > t1
    kind = ", ".join(sorted(kinds))
    return Agreed(i[agree], j[agree], sim0[agree], sim1[agree], best0, best1, compared, widened, kind)


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
