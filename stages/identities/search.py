"""Duplicate search: every base row above a cosine threshold, by k nearest neighbours (Algorithm 2, step 4).

Rows are L2-normalised, so inner product = cosine. Each query asks the index for its k nearest
base rows and keeps those above the threshold. That is exactly the range result (every base row
above the threshold) whenever a query has fewer than k rows above it; when the k-th neighbour is
still above the threshold there may be more, so those queries alone are asked again with 4·k,
until the last neighbour falls below the threshold or k covers the whole base. The first
neighbour of every query is its best cosine to the base: the report's histogram comes from the
same search, with no second pass.

Why k-NN and not FAISS's `range_search`: range search on IVF scans its lists without BLAS and on
GPU indexes does not exist; k-NN search is batched matrix products on the flat index, and the
same call on IVF and on faiss-gpu.

Indexes:
- up to `exact_index_max` base rows: `IndexFlatIP`, exact;
- above: `IndexIVFFlat` with `nlist` lists (default sqrt(n)), `nprobe` of them scanned per query;
- `gpu` and a faiss with GPUs: `GpuIndexFlatIP` storing fp16 (half the memory, tensor cores);
  its scores are off by at most ~1e-3 for unit vectors (2·2^-11 per product, summed over |q_i x_i|
  ≤ 1), so candidates are kept down to threshold − `FP16_MARGIN` and re-scored in fp32 against
  the fp32 rows before the threshold is applied. Without a GPU the same path runs on a CPU index
  of fp16-rounded vectors (`fp16_cpu`), which is how its re-scoring is tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP16_MARGIN = 2e-3  # twice the worst-case fp16 storage error of a unit-vector inner product


@dataclass(frozen=True)
class SearchSettings:
    k: int = 8  # neighbours asked first; queries with k above the threshold are asked again with 4·k
    exact_index_max: int = 200_000  # up to this many base rows: exact flat index; above: IVF-Flat
    nlist: int | None = None  # IVF lists; None: sqrt(n) (k-means training grows with nlist²)
    nprobe: int = 16  # IVF lists scanned per query (benchmarks/dedup.py: recall 1.0 from 8 at 1 M)
    gpu: bool = True  # faiss-gpu brute force (fp16, fp32 re-scoring) when faiss has a GPU
    fp16_cpu: bool = False  # the fp16 path on the CPU (tests of its re-scoring)
    query_batch: int = 16_384


@dataclass
class Neighbours:
    qi: np.ndarray  # query row of each pair above the threshold
    bi: np.ndarray  # base row
    sim: np.ndarray  # its cosine (fp32, re-scored on the fp16 path)
    best: np.ndarray  # per query: highest cosine to any base row (-inf for an empty base)
    best_id: np.ndarray  # per query: that base row (-1 for an empty base)
    widened: int  # queries asked again with a larger k
    index: str


class _Index:
    """A FAISS index with its score error bound (`margin`) and whether candidates need re-scoring."""

    def __init__(self, xb: np.ndarray, s: SearchSettings):
        import faiss

        self.xb, d, n = xb, xb.shape[1], len(xb)
        self.margin, self.rescore = 0.0, False
        if s.fp16_cpu or (s.gpu and faiss.get_num_gpus() > 0):
            self.margin, self.rescore = FP16_MARGIN, True
            if s.fp16_cpu:
                self.kind = "FlatIP over fp16-rounded rows (CPU)"
                self.index = faiss.IndexFlatIP(d)
                self.index.add(_fp16(xb))
            else:
                self.kind = "GpuIndexFlatIP fp16 + fp32 re-scoring"
                self._res = faiss.StandardGpuResources()
                cfg = faiss.GpuIndexFlatConfig()
                cfg.useFloat16 = True
                self.index = faiss.GpuIndexFlatIP(self._res, d, cfg)
                self.index.add(xb)
        elif n <= s.exact_index_max:
            self.kind = "FlatIP (exact)"
            self.index = faiss.IndexFlatIP(d)
            self.index.add(xb)
        else:
            nlist = s.nlist or int(np.sqrt(n))
            self.kind = f"IVFFlat nlist {nlist} nprobe {s.nprobe}"
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            self.index.train(xb[np.sort(rng.choice(n, min(n, nlist * 40), replace=False))])
            self.index.nprobe = s.nprobe
            self.index.add(xb)
        self.fp16_cpu = s.fp16_cpu

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores and ids of the k nearest, best first (re-scored in fp32 on the fp16 path), and the
        search's own k-th score, which decides whether k was enough."""
        dist, ids = self.index.search(_fp16(q) if self.fp16_cpu else q, k)
        kth = dist[:, -1].copy()
        if self.rescore:
            for a in range(0, len(q), 2048):  # bounded memory: 2,048 x k rows gathered at a time
                i = ids[a : a + 2048]
                exact = np.einsum("nd,nkd->nk", q[a : a + 2048], self.xb[np.maximum(i, 0)])
                exact[i < 0] = -np.inf
                order = np.argsort(-exact, axis=1, kind="stable")
                dist[a : a + 2048] = np.take_along_axis(exact, order, 1)
                ids[a : a + 2048] = np.take_along_axis(i, order, 1)
        return dist, ids, kth


def _fp16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def knn_above(
    xq: np.ndarray, xb: np.ndarray, threshold: float, s: SearchSettings, self_query: bool = False
) -> Neighbours:
    """Every (query, base row) with cosine > threshold, and each query's best base row.

    `self_query`: the queries are the base rows themselves (within-dataset search); a row is
    never its own neighbour.
    """
    xq, xb = np.ascontiguousarray(xq, np.float32), np.ascontiguousarray(xb, np.float32)
    nq, nb = len(xq), len(xb)
    best, best_id = np.full(nq, -np.inf, np.float32), np.full(nq, -1, np.int64)
    qi: list[np.ndarray] = []
    bi: list[np.ndarray] = []
    sim: list[np.ndarray] = []
    if nq == 0 or nb == 0:
        e = np.zeros(0, np.int64)
        return Neighbours(e, e, np.zeros(0, np.float32), best, best_id, 0, "none")
    index = _Index(xb, s)
    widened = 0
    for start in range(0, nq, s.query_batch):
        rows = np.arange(start, min(nq, start + s.query_batch))
        k = min(nb, s.k + int(self_query))
        first = True
        while len(rows):
            dist, ids, kth = index.search(xq[rows], k)
            if self_query:  # drop the row itself wherever it ranks (ties with an identical twin)
                dist = np.where(ids == rows[:, None], -np.inf, dist)
            if first:
                top = np.argmax(dist, axis=1)
                best[rows] = dist[np.arange(len(rows)), top]
                best_id[rows] = np.where(np.isfinite(best[rows]), ids[np.arange(len(rows)), top], -1)
                first = False
            full = (kth > threshold - index.margin) & (k < nb)  # maybe more above the threshold
            done = ~full
            keep = (dist[done] > threshold) & (ids[done] >= 0)
            qi.append(np.repeat(rows[done], keep.sum(axis=1)))
            bi.append(ids[done][keep].astype(np.int64))
            sim.append(dist[done][keep].astype(np.float32))
            rows = rows[full]
            widened += len(rows)
            k = min(nb, 4 * k)
    return Neighbours(np.concatenate(qi), np.concatenate(bi), np.concatenate(sim), best, best_id, widened, index.kind)
