"""Which PLTD rows an epoch reads: a source / label-kind selection, and pose-balanced draws.

Selection keeps the rows whose `source` and `label_kind` are in the configured lists (empty list:
all), e.g. the 300W-LP teacher trains on `label_kinds: [ground_truth]` only.

Pose-balanced sampling (MOS's online sampling; PAPER.md's pose-histogram rebalancing): rows fall
into equal-width yaw bins over [lo, hi] (yaws outside go to the end bins). Row i of bin b is drawn
with weight w_i ∝ 1 / n_b, so every non-empty bin gets the same share of the epoch, except that no
row is drawn more than `cap` times per epoch in expectation; the share a capped bin cannot take goes
to the others (water-filling). With N kept rows and B bins, the expected draws of a row are

    e_i = min(cap, λ / n_b(i)),   λ such that Σ_b min(cap · n_b, λ) = N

so Σ_i e_i = N: the epoch keeps its exact length. Integer draw counts come from systematic sampling
over a seeded permutation (one uniform u, c_i = ⌊C_i − u⌋ − ⌊C_{i−1} − u⌋ with C the running sum of
e): E[c_i] = e_i, Σ c_i = N exactly, and every row whose e_i is an integer is drawn exactly e_i times
(cap = 1, or an already flat histogram: every row exactly once). The draws are a function of
(seed, epoch) only, so every rank and DataLoader worker computes the same epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Selection:
    sources: tuple[str, ...] = ()  # keep rows of these sources (empty: every source)
    label_kinds: tuple[str, ...] = ()  # keep rows of these label kinds (empty: every kind)

    @property
    def active(self) -> bool:
        return bool(self.sources or self.label_kinds)

    def columns(self) -> list[str]:
        return [c for c, v in (("source", self.sources), ("label_kind", self.label_kinds)) if v]

    def mask(self, table: pa.Table) -> np.ndarray:
        keep = np.ones(table.num_rows, bool)
        for column, allowed in (("source", self.sources), ("label_kind", self.label_kinds)):
            if allowed:
                values = table.column(column).cast(pa.string())
                keep &= pc.is_in(values, value_set=pa.array(list(allowed), pa.string())).to_numpy(zero_copy_only=False)
        return keep


@dataclass(frozen=True)
class Balance:
    bins: int = 12  # equal-width yaw bins over [lo, hi]
    lo: float = -90.0
    hi: float = 90.0
    cap: float = 4.0  # the most draws of one row per epoch (expected); 1: no row repeats


def yaw_bins(yaw: np.ndarray, b: Balance) -> np.ndarray:
    """Bin index 0 … bins−1 of every yaw (degrees); outside [lo, hi] and NaN go to the end bins."""
    edges = np.linspace(b.lo, b.hi, b.bins + 1)[1:-1]
    return np.digitize(np.nan_to_num(np.asarray(yaw, np.float64), nan=b.lo), edges)


def expected_draws(counts: np.ndarray, n: int, cap: float) -> np.ndarray:
    """Per-bin expected draws of ONE row, e_b = min(cap, λ / n_b), with Σ_b n_b · e_b = n (water-filling).

    Hand-written (a dozen lines): no library computes this capped allocation."""
    counts = np.asarray(counts, np.float64)
    if cap * counts.sum() < n:
        raise ValueError(f"balance cap {cap} cannot fill an epoch of {n} rows from {int(counts.sum())}")
    e = np.zeros_like(counts)
    free = counts > 0
    left = float(n)
    while free.any():  # bins that hit the cap leave; λ is recomputed over the rest
        lam = left / free.sum()  # each free bin's total share
        capped = free & (counts * cap <= lam)
        if not capped.any():
            e[free] = lam / counts[free]
            break
        e[capped] = cap
        left -= float((counts[capped] * cap).sum())
        free &= ~capped
    return e


def draw_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer draws c_i with E[c_i] = e_i and Σ c_i = round(Σ e_i), by systematic sampling over a
    random order of the rows (integer e_i are drawn exactly e_i times)."""
    order = rng.permutation(len(expected))
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(expected, np.float64)[order])])
    total = round(cum[-1])
    cum *= total / cum[-1] if cum[-1] else 1.0  # float drift: make Σ exactly the epoch length
    u = rng.random()
    hits = np.floor(cum - u + 1e-9)
    counts = np.empty(len(expected), np.int64)
    counts[order] = np.diff(hits).astype(np.int64)
    return counts


def epoch_draws(yaw: np.ndarray, b: Balance, seed: int, epoch: int) -> np.ndarray:
    """How many times each row (in yaw's order) is read this epoch; sums to len(yaw)."""
    bins = yaw_bins(yaw, b)
    counts = np.bincount(bins, minlength=b.bins)
    per_row = expected_draws(counts, len(yaw), b.cap)[bins]
    return draw_counts(per_row, np.random.default_rng([seed, epoch, 0x9A1]))
