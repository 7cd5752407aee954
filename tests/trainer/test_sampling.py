"""Which rows an epoch reads: source / label-kind selection and pose-balanced draws."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from pltd.trainer.config import load_config
from pltd.trainer.data import Augment, PLTDDataset
from pltd.trainer.sampling import Balance, Selection, draw_counts, epoch_draws, expected_draws, yaw_bins
from tests.trainer.test_data import synthetic_shards


def test_expected_draws_match_the_formula_by_hand():
    """Conformance to the documented formula (trainer/sampling.py), computed by hand:
    e_b = min(cap, λ / n_b) with Σ_b n_b·e_b = N.
    Counts (80, 15, 5), N = 100. No cap: λ = 100/3, e = (100/3)/80, (100/3)/15, (100/3)/5 — weights
    ∝ 1/count and every bin gets a third of the epoch. Cap 4: bin 3 would need 6.67 > 4, so it takes
    5·4 = 20 draws; the other two share 80, λ = 40: e = 40/80, 40/15, 4. Cap 1: every row once."""
    counts, n = np.array([80, 15, 5]), 100
    assert expected_draws(counts, n, 1e9) == pytest.approx([100 / 3 / 80, 100 / 3 / 15, 100 / 3 / 5])
    assert expected_draws(counts, n, 4.0) == pytest.approx([0.5, 40 / 15, 4.0])
    assert expected_draws(counts, n, 1.0).tolist() == [1.0, 1.0, 1.0]
    # an empty bin gets nothing and does not take a share: (10, 0, 30), N = 40, λ = 20
    assert expected_draws(np.array([10, 0, 30]), 40, 1e9) == pytest.approx([2.0, 0.0, 20 / 30])
    for cap in (1.0, 2.5, 4.0, 1e9):  # every cap keeps the exact epoch length
        assert (counts * expected_draws(counts, n, cap)).sum() == pytest.approx(n)


def test_yaw_bins_edges():
    """Conformance to np.digitize's documented rule (edge values go to the upper bin); 4 bins over
    [−90, 90] have inner edges −45, 0, 45; outside values and NaN go to the end bins."""
    b = Balance(bins=4, lo=-90, hi=90)
    yaw = np.array([-100, -90, -45.01, -45, -0.01, 0, 44.9, 45, 90, 200, np.nan])
    assert yaw_bins(yaw, b).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 0]


def test_draw_counts_are_exact_in_total_and_unbiased():
    """Consistency: systematic sampling gives Σc = N every time, integer expectations exactly, and
    the expectation of every row's count (mean over 4,000 seeds)."""
    e = np.repeat(expected_draws(np.array([80, 15, 5]), 100, 4.0), [80, 15, 5])
    runs = np.stack([draw_counts(e, np.random.default_rng(s)) for s in range(4000)])
    assert (runs.sum(1) == 100).all()
    assert (runs[:, 95:] == 4).all()  # e = 4 exactly: always 4 draws
    assert set(np.unique(runs[:, :80])) == {0, 1} and set(np.unique(runs[:, 80:95])) == {2, 3}  # ⌊e⌋ or ⌈e⌉
    assert runs.mean(0)[:80].mean() == pytest.approx(0.5, abs=0.01)
    assert runs.mean(0)[80:95] == pytest.approx(40 / 15, abs=0.03)


def skewed_yaw(k: int) -> float:
    """120 rows: 90 near-frontal (bin 3 of 6), 20 at yaw 40 (bin 4), 10 at yaw −70 (bin 0)."""
    return -70.0 if k % 12 == 0 else 40.0 if k % 6 == 3 else 2.0


def test_balanced_reader_flattens_a_skewed_yaw_histogram(tmp_path):
    """Consistency: through real DataLoaders on 2 ranks × 2 workers, a 90/20/10 yaw histogram
    becomes about 40/40/40 (the formula's expectation), the epoch has exactly 120 rows, every rank
    and worker computes the same draws, and a new epoch draws anew."""
    shards = synthetic_shards(tmp_path, n_shards=2, rows=60, group=10, yaw=skewed_yaw)
    bal = Balance(bins=6, lo=-90, hi=90, cap=10.0)
    before = Counter(yaw_bins(np.array([skewed_yaw(k) for k in range(120)]), bal).tolist())
    assert sorted(before.values()) == [10, 20, 90]
    seen = []
    for rank in range(2):
        ds = PLTDDataset(shards, Augment(input_size=16), buffer_size=8, seed=1, rank=rank, world_size=2, balance=bal)
        ds.set_epoch(0)
        seen += [i for b in DataLoader(ds, batch_size=4, num_workers=2) for i in b["image_id"]]
    assert len(seen) == 120 == len(ds)  # exact epoch length
    after = Counter(yaw_bins(np.array([skewed_yaw(int(i[1:])) for i in seen]), bal).tolist())
    assert set(after) == {0, 3, 4} and all(34 <= c <= 46 for c in after.values()), after
    ones = PLTDDataset(shards, Augment(input_size=16), seed=1, rank=1, world_size=2, balance=bal)
    other = [[(s, g, list(r)) for s, g, r in units] for units in ones.plan(4)]
    assert other == [[(s, g, list(r)) for s, g, r in units] for units in ds.plan(4)]  # same on every process
    ones.set_epoch(1)
    assert epoch_draws(ones.yaw, bal, 1, 1).tolist() != epoch_draws(ones.yaw, bal, 1, 0).tolist()


@pytest.mark.parametrize("cap", [1.0, 4.0])
def test_balanced_reader_reads_each_row_once_when_the_cap_allows_it(tmp_path, cap):
    """Consistency: with cap 1 (no row may repeat) on a skewed histogram, and with any cap on an
    already flat one, the balanced epoch is every row exactly once across 2 ranks × 2 workers."""
    skewed = cap == 1.0
    yaw = skewed_yaw if skewed else (lambda k: [-70.0, 2.0, 40.0][k % 3])
    shards = synthetic_shards(tmp_path, n_shards=2, rows=30, group=10, yaw=yaw)
    bal = Balance(bins=6, lo=-90, hi=90, cap=cap)
    plan = PLTDDataset(shards, Augment(input_size=16), seed=2, rank=0, world_size=2, balance=bal).plan(4)
    ids = sorted(f"{s}:{g}:{r}" for units in plan for s, g, rows in units for r in rows)
    assert len(ids) == 60 and len(set(ids)) == 60


def test_balance_off_keeps_the_paper_reader(tmp_path):
    """Consistency: without the option the plan is the former one, whole row groups shuffled with
    seed + epoch and dealt k mod readers (the paper's configuration is unchanged)."""
    import random

    from pltd.trainer.data import row_group_units

    shards = synthetic_shards(tmp_path, n_shards=2, rows=30, group=7)
    ds = PLTDDataset(shards, Augment(input_size=16), seed=4)
    ds.set_epoch(3)
    old = row_group_units(shards)
    random.Random(4 + 3).shuffle(old)
    assert [[(s, g, len(r)) for s, g, r in u] for u in ds.plan(3)] == [old[k::3] for k in range(3)]
    assert all(isinstance(r, range) and r.start == 0 for u in ds.plan(3) for *_, r in u)
    assert load_config("mtl").balance == "none" and load_config("mtl").label_kinds == []


def test_selection_by_label_kind_and_source(tmp_path):
    """Consistency: the filters keep exactly the matching rows; the teacher preset keeps ground truth
    only; a selection that keeps nothing is an error naming the fields."""
    shards = synthetic_shards(tmp_path, n_shards=2, rows=15, group=4,
                              kind=lambda k: "ground_truth" if k % 3 == 0 else "pseudo",
                              source=lambda k: "300wlp" if k % 2 else "vggface2")  # fmt: skip

    def ids(select):
        ds = PLTDDataset(shards, Augment(input_size=16), seed=0, select=select)
        got = sorted(i for b in DataLoader(ds, batch_size=4, num_workers=0) for i in b["image_id"])
        assert len(got) == len(ds)
        return got

    assert ids(Selection(label_kinds=("ground_truth",))) == sorted(f"r{k}" for k in range(30) if k % 3 == 0)
    both = Selection(sources=("300wlp",), label_kinds=("ground_truth",))
    assert ids(both) == sorted(f"r{k}" for k in range(30) if k % 3 == 0 and k % 2)
    assert load_config("teacher-300wlp").label_kinds == ["ground_truth"]
    with pytest.raises(ValueError, match=r"sources=\['afw'\] keeps 0 of 30 rows"):
        PLTDDataset(shards, select=Selection(sources=("afw",)))
