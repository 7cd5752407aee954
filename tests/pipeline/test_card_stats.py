"""The card's statistics merged from per-shard counters equal the ones computed over every row at once.

Consistency test (pltd vs pltd): the reference is the card's former whole-table computation (numpy
over all rows of the 7 columns, `pipeline/card.py` before it merged per-shard counters), written out below. Counts must
match exactly; the fit_error median and 95th percentile within one histogram bin (`FIT_STEP`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pltd.pipeline import storage
from pltd.pipeline.card_stats import FIT_STEP, POSE_EDGES, summarize
from pltd.pipeline.layout import RunLayout


def shard(rng, n: int, face_offset: int) -> pa.Table:
    pose = rng.uniform(-100, 100, (n, 3)).astype(np.float32)
    pose[rng.random(n) < 0.05, 1] = np.nan
    pseudo = rng.random(n) < 0.7
    fit = np.where(pseudo, rng.gamma(2.0, 0.02, n), np.nan).astype(np.float32)
    if n > 100:
        fit[np.flatnonzero(pseudo)[:2]] = [1.5, 2.25]  # beyond the histogram: sent as values
    return pa.table({
        "source": pa.array(rng.choice(["vggface2", "300w_lp", "ms1mv3"], n)).dictionary_encode(),
        "face_id": pa.array(face_offset + rng.integers(0, 40, n), pa.int64()),
        "pose": pa.FixedSizeListArray.from_arrays(pa.array(pose.reshape(-1)), 3),
        "label_kind": pa.array(np.where(pseudo, "pseudo", "ground_truth")).dictionary_encode(),
        "n_samples": pa.array(np.where(pseudo, rng.integers(1, 9, n), 0), pa.int8()),
        "fit_error": pa.array(fit),
    })  # fmt: skip


def reference(t: pa.Table) -> dict:
    """The card's former computation over every row at once."""
    pose = t.column("pose").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 3)
    fit = t.column("fit_error").to_numpy()
    pseudo = np.asarray(t.column("label_kind").cast(pa.string()).to_pylist()) == "pseudo"
    per_id = np.bincount(t.column("face_id").to_numpy())
    per_id = per_id[per_id > 0]
    src, counts = np.unique(np.asarray(t.column("source").cast(pa.string()).to_pylist()), return_counts=True)
    kept = dict(zip(*np.unique(t.column("n_samples").to_numpy()[pseudo], return_counts=True), strict=True))
    yaw = np.abs(pose[:, 0])
    return {
        "rows": t.num_rows,
        "rows_by_source": {str(k): int(v) for k, v in zip(src, counts, strict=True)},
        "identities": len(per_id),
        "images_per_identity": {"min": int(per_id.min()), "median": float(np.median(per_id)),
                                "mean": float(per_id.mean()), "max": int(per_id.max())},
        "label_kind": {"pseudo": int(pseudo.sum()), "ground_truth": int((~pseudo).sum())},
        "pose_abs_mean": {k: round(float(v), 2) for k, v in zip(("yaw", "pitch", "roll"),
                                                                   np.nanmean(np.abs(pose), axis=0), strict=True)},
        "yaw_buckets": {"0-30": int((yaw < 30).sum()), "30-60": int(((yaw >= 30) & (yaw < 60)).sum()),
                        "60-90+": int((yaw >= 60).sum())},
        "fit_error_pseudo": {"median": float(np.nanmedian(fit[pseudo])), "p95": float(np.nanpercentile(fit[pseudo], 95))},
        "n_samples_pseudo": {str(k): int(v) for k, v in kept.items()},
        "pose_hist": np.stack([np.histogram(pose[:, k][np.isfinite(pose[:, k])], bins=60, range=(-90, 90))[0]
                               for k in range(3)]),
    }  # fmt: skip


@pytest.mark.parametrize("with_client", [False, True])
def test_per_shard_statistics_merge_to_the_whole_table_ones(tmp_path, with_client, request):
    rng = np.random.default_rng(7)
    layout = RunLayout(str(tmp_path / "run"))
    shards = [shard(rng, n, off) for n, off in ((500, 0), (300, 20), (1, 90), (400, 10))]  # ids shared across shards
    for i, t in enumerate(shards):
        storage.write_parquet(layout.shard(i), t)
    client = request.getfixturevalue("client") if with_client else None
    got = summarize(layout, client)
    want = reference(pa.concat_tables(shards))
    pose_hist, fit_plot, per_id = got.pop("_arrays")
    np.testing.assert_array_equal(pose_hist, want.pop("pose_hist"))
    np.testing.assert_array_equal(POSE_EDGES, np.linspace(-90, 90, 61))
    fit_want = want.pop("fit_error_pseudo")
    fit_got = got.pop("fit_error_pseudo")
    for k in ("median", "p95"):
        assert abs(fit_got[k] - fit_want[k]) <= FIT_STEP, k
    assert got == want
    assert fit_plot[1].sum() == want["label_kind"]["pseudo"] and per_id.sum() == want["rows"]


def test_a_pltd_without_shards_has_no_rows(tmp_path):
    assert summarize(RunLayout(str(tmp_path / "run"))) == {"rows": 0}


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        yield c
