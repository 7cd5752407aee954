"""k-NN duplicate search above a threshold vs numpy brute force (consistency tests: the range result
is defined by the brute-force comparison of every pair, which numpy computes directly)."""

from __future__ import annotations

import numpy as np
import pytest

from pltd.stages.identities.dedup import DedupSettings, agreed_pairs
from pltd.stages.identities.search import FP16_MARGIN, SearchSettings, knn_above

D = 32


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def crowd():
    """300 queries, 2,000 base rows; query 0 has 25 base rows above 0.8 (more than k = 4 three
    times over), query 1 has exactly 4, query 2 has 3, the others a few by chance."""
    rng = np.random.default_rng(0)
    xq, xb = unit(rng.normal(size=(300, D))), unit(rng.normal(size=(2000, D)))
    for q, n in ((0, 25), (1, 4), (2, 3)):  # cosine ≥ 1/sqrt(1 + 0.2²) − 0.2 ≈ 0.78, mostly ≥ 0.95
        start = 100 * (q + 1)
        xb[start : start + n] = unit(xq[q] + 0.2 * unit(rng.normal(size=(n, D))))
    return xq, xb


def brute(xq, xb, t, self_query=False):
    s = xq @ xb.T
    if self_query:
        np.fill_diagonal(s, -np.inf)
    qi, bi = np.nonzero(s > t)
    best = s.max(axis=1)
    return set(zip(qi.tolist(), bi.tolist(), strict=True)), best


@pytest.mark.parametrize("t", [0.8, 0.5, 0.3])
def test_knn_equals_brute_force_range_result(crowd, t):
    xq, xb = crowd
    want, best = brute(xq, xb, t)
    got = knn_above(xq, xb, t, SearchSettings(k=4, query_batch=64))
    assert set(zip(got.qi.tolist(), got.bi.tolist(), strict=True)) == want
    assert sum(1 for q, _ in want if q == 0) >= 25 and got.widened >= 1  # query 0 had to be re-asked
    assert np.allclose(got.best, best, atol=1e-5)
    assert np.allclose(got.sim, np.einsum("nd,nd->n", xq[got.qi], xb[got.bi]), atol=1e-5)


def test_more_duplicates_than_k_are_all_found_by_widening(crowd):
    xq, xb = crowd
    got = knn_above(xq[:1], xb, 0.8, SearchSettings(k=2))
    assert sorted(got.bi.tolist()) == sorted(np.flatnonzero(xq[0] @ xb.T > 0.8).tolist())
    assert len(got.bi) >= 25 and got.widened == 2  # k 2 → 8 → 32: asked again twice


def test_within_dataset_never_pairs_a_row_with_itself(crowd):
    _, xb = crowd
    x = np.vstack([xb[:400], xb[100:103]])  # three exact twins: ties with the row itself
    want, best = brute(x, x, 0.8, self_query=True)
    got = knn_above(x, x, 0.8, SearchSettings(k=3), self_query=True)
    assert set(zip(got.qi.tolist(), got.bi.tolist(), strict=True)) == want
    assert np.allclose(got.best, best, atol=1e-5)


def test_fp16_path_rescores_to_the_exact_result(crowd):
    """The GPU path's logic on the CPU: an index of fp16-rounded rows, candidates kept down to
    threshold − margin, re-scored in fp32."""
    xq, xb = crowd
    # a base row just above the threshold in fp32 that fp16 rounding may push below it
    v = unit(np.random.default_rng(1).normal(size=D))
    r = unit(np.random.default_rng(2).normal(size=D))
    r = unit(r - (r @ v) * v)
    xq2 = np.vstack([xq, v])
    xb2 = np.vstack([xb, unit(0.8001 * v + np.sqrt(1 - 0.8001**2) * r)])
    want, best = brute(xq2, xb2, 0.8)
    got = knn_above(xq2, xb2, 0.8, SearchSettings(k=4, fp16_cpu=True))
    assert (len(xq2) - 1, len(xb2) - 1) in want
    assert set(zip(got.qi.tolist(), got.bi.tolist(), strict=True)) == want
    assert got.sim.dtype == np.float32 and np.allclose(got.best, best, atol=1e-6)  # fp32 scores, not fp16
    rounded = xq2.astype(np.float16).astype(np.float32) @ xb2.astype(np.float16).astype(np.float32).T
    assert np.abs(rounded - xq2 @ xb2.T).max() < FP16_MARGIN / 2  # the margin covers the rounding


def test_ivf_finds_clustered_duplicates():
    rng = np.random.default_rng(3)
    centres = unit(rng.normal(size=(20, D)))
    xb = unit(centres[rng.integers(0, 20, 3000)] + 0.6 * unit(rng.normal(size=(3000, D))))
    xq = unit(xb[:200] + 0.2 * unit(rng.normal(size=(200, D))))
    want, _ = brute(xq, xb, 0.9)
    got = knn_above(xq, xb, 0.9, SearchSettings(k=4, exact_index_max=100, nlist=16, nprobe=8))
    assert "IVFFlat nlist 16" in got.index
    found = set(zip(got.qi.tolist(), got.bi.tolist(), strict=True))
    assert found <= want and len(found) >= 0.95 * len(want)


def test_agreed_pairs_best_other_comes_from_the_search(crowd):
    xq, xb = crowd
    x0 = np.vstack([xq, xb])
    x1 = x0.copy()
    dataset = np.r_[np.zeros(len(xq), np.int64), np.ones(len(xb), np.int64)]
    a = agreed_pairs(x0, x1, dataset, DedupSettings((0.8, 0.8), search=SearchSettings(k=4)))
    _, best = brute(xq, xb, 0.8)
    assert np.allclose(a.best0[: len(xq)], best, atol=1e-5) and np.isnan(a.best0[len(xq) :]).all()
    assert np.allclose(a.best1[: len(xq)], a.best0[: len(xq)], atol=1e-5)  # same vectors in network 1
    assert a.pairs_compared == len(xq) * len(xb) and len(a.i) == len(brute(xq, xb, 0.8)[0])
