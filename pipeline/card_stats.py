"""The dataset card's statistics: counters and histograms per shard, computed on the workers, merged
on the driver. The driver holds one count per identity and fixed-size histograms, never a row.

Exact: rows, rows per source, label kinds, identities and images per identity, mean |angle|, |yaw|
buckets, samples kept, the pose histograms. Within `FIT_STEP`: the median and 95th percentile of
the pseudo-labels' fit_error, read from a histogram of `FIT_STEP`-wide bins on [0, FIT_MAX) (values
beyond it are sent as they are, and are few: a fit error is a fraction of the face size).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout, part_files

COLUMNS = ["source", "face_id", "pose", "label_kind", "n_samples", "fit_error"]
POSE_EDGES = np.linspace(-90, 90, 61)  # the card's pose plots: 60 bins of 3°, values outside left out
FIT_STEP, FIT_MAX = 1e-5, 1.0
FIT_BINS = round(FIT_MAX / FIT_STEP)
YAW_BUCKETS = ("0-30", "30-60", "60-90+")


def shard_stats(url: str) -> dict:
    """On a worker: the card's counters and histograms of one shard (small: no array per row)."""
    t = storage.read_table(url, COLUMNS)
    pose = t.column("pose").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 3)
    pseudo = pc.equal(t.column("label_kind").cast(pa.string()), "pseudo").to_numpy(zero_copy_only=False)
    fit = t.column("fit_error").to_numpy()[pseudo].astype(np.float64)
    fit = fit[np.isfinite(fit)]
    fine = np.floor(np.clip(fit, 0, None) / FIT_STEP).astype(np.int64)
    bins, fit_counts = np.unique(fine[fine < FIT_BINS], return_counts=True)
    faces, face_counts = np.unique(t.column("face_id").to_numpy(), return_counts=True)
    finite = np.isfinite(pose)
    yaw = np.abs(pose[:, 0])
    sources = pc.value_counts(t.column("source").cast(pa.string()).combine_chunks())
    kept = np.unique(t.column("n_samples").to_numpy()[pseudo], return_counts=True)
    return {
        "rows": t.num_rows,
        "sources": dict(zip(sources.field("values").to_pylist(), sources.field("counts").to_pylist(), strict=True)),
        "faces": (faces, face_counts),
        "pseudo": int(pseudo.sum()),
        "abs_sum": np.where(finite, np.abs(pose), 0).sum(axis=0),
        "abs_n": finite.sum(axis=0),
        "yaw_buckets": [int((yaw < 30).sum()), int(((yaw >= 30) & (yaw < 60)).sum()), int((yaw >= 60).sum())],
        "pose_hist": np.stack([np.histogram(pose[:, k][finite[:, k]], bins=POSE_EDGES)[0] for k in range(3)]),
        "fit_bins": (bins, fit_counts),
        "fit_beyond": fit[fine >= FIT_BINS],
        "kept": {int(k): int(v) for k, v in zip(*kept, strict=True)},
    }


class CardStats:
    """The merged statistics of every shard (merged as they come, in any order)."""

    def __init__(self) -> None:
        self.rows = self.pseudo = 0
        self.sources: Counter = Counter()
        self.kept: Counter = Counter()
        self.per_id = np.zeros(0, np.int64)
        self.abs_sum, self.abs_n = np.zeros(3), np.zeros(3, np.int64)
        self.yaw_buckets = np.zeros(3, np.int64)
        self.pose_hist = np.zeros((3, len(POSE_EDGES) - 1), np.int64)
        self.fit_hist = np.zeros(FIT_BINS, np.int64)
        self.fit_beyond: list[np.ndarray] = []

    def add(self, s: dict) -> None:
        self.rows += s["rows"]
        self.pseudo += s["pseudo"]
        self.sources.update(s["sources"])
        self.kept.update(s["kept"])
        faces, counts = s["faces"]
        if faces.size and faces[-1] >= self.per_id.size:
            self.per_id = np.concatenate([self.per_id, np.zeros(faces[-1] + 1 - self.per_id.size, np.int64)])
        self.per_id[faces] += counts
        self.abs_sum += s["abs_sum"]
        self.abs_n += s["abs_n"]
        self.yaw_buckets += s["yaw_buckets"]
        self.pose_hist += s["pose_hist"]
        bins, counts = s["fit_bins"]
        self.fit_hist[bins] += counts
        self.fit_beyond.append(s["fit_beyond"])

    def fit_quantile(self, q: float) -> float | None:
        """numpy's (linear) percentile, with each value below FIT_MAX read as its bin's centre."""
        beyond = np.sort(np.concatenate([np.zeros(0), *self.fit_beyond]))
        cum = np.cumsum(self.fit_hist)
        n = int(cum[-1]) + beyond.size
        if not n:
            return None

        def value(k: int) -> float:  # the k-th smallest (0-based)
            if k < cum[-1]:
                return (int(np.searchsorted(cum, k, side="right")) + 0.5) * FIT_STEP
            return float(beyond[k - int(cum[-1])])

        r = q * (n - 1)
        lo = int(np.floor(r))
        return value(lo) + (r - lo) * (value(min(lo + 1, n - 1)) - value(lo))

    def fit_plot(self, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """(edges, counts) of the fit_error plot: `bins` bins from the smallest to the largest value."""
        centres = (np.flatnonzero(self.fit_hist) + 0.5) * FIT_STEP
        values = np.concatenate([centres, *self.fit_beyond])
        weights = np.concatenate([self.fit_hist[self.fit_hist > 0], np.ones(values.size - centres.size, np.int64)])
        return np.histogram(values, bins=bins, weights=weights)[::-1]

    def summary(self) -> dict:
        per_id = self.per_id[self.per_id > 0]
        median, p95 = self.fit_quantile(0.5), self.fit_quantile(0.95)
        mean = np.where(self.abs_n > 0, self.abs_sum / np.maximum(self.abs_n, 1), np.nan)  # nanmean's
        out = {
            "rows": self.rows,
            "rows_by_source": {k: int(v) for k, v in sorted(self.sources.items())},
            "identities": int(per_id.size),
            "images_per_identity": {"min": int(per_id.min()), "median": float(np.median(per_id)),
                                    "mean": float(per_id.mean()), "max": int(per_id.max())},
            "label_kind": {"pseudo": self.pseudo, "ground_truth": self.rows - self.pseudo},
            "pose_abs_mean": {k: round(float(v), 2) for k, v in zip(("yaw", "pitch", "roll"), mean, strict=True)},
            "yaw_buckets": dict(zip(YAW_BUCKETS, self.yaw_buckets.tolist(), strict=True)),
            "fit_error_pseudo": {"median": None if median is None else round(median, 5),
                                 "p95": None if p95 is None else round(p95, 5)},
            "n_samples_pseudo": {str(k): v for k, v in sorted(self.kept.items())},
        }  # fmt: skip
        out["_arrays"] = (self.pose_hist, self.fit_plot() if self.pseudo else None, per_id)
        return out


def summarize(layout: RunLayout, client=None) -> dict:
    """The card's summary of the PLTD's shards: statistics per shard on the workers (`client`), or here."""
    files = part_files(layout.pltd)
    if not files:
        return {"rows": 0}
    merged = CardStats()
    if client is None:
        for url in files:
            merged.add(shard_stats(url))
    else:
        from distributed import as_completed

        for future in as_completed(client.map(shard_stats, files, pure=False)):
            merged.add(future.result())
            future.release()
    return merged.summary()
