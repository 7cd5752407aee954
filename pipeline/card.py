"""The dataset card of a PLTD: `RUN/pltd/README.md` with PNG plots, and the same summary for
`pltd inspect`. Computed from the shards themselves (only the small columns are read)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import yaml

from pltd.pipeline import storage
from pltd.pipeline.hf import front_matter
from pltd.pipeline.layout import RunLayout, read_parts
from pltd.pipeline.text import angles_text, buckets_text, kept_text, numbers_text
from pltd.schemas import PLTD

COLUMNS = ["source", "face_id", "pose", "label_kind", "n_samples", "fit_error", "eye_closed"]


def summarize(layout: RunLayout) -> dict:
    t = read_parts(layout.pltd, columns=COLUMNS)
    if t is None:
        return {"rows": 0}
    pose = t.column("pose").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 3)
    fit = t.column("fit_error").to_numpy()
    pseudo = np.asarray(t.column("label_kind").cast(pa.string()).to_pylist()) == "pseudo"
    face = t.column("face_id").to_numpy()
    per_id = np.bincount(face)
    per_id = per_id[per_id > 0]
    sources = dict(
        zip(*np.unique(np.asarray(t.column("source").cast(pa.string()).to_pylist()), return_counts=True), strict=True)
    )
    ipi = {"min": int(per_id.min()), "median": float(np.median(per_id)), "mean": float(per_id.mean()),
           "max": int(per_id.max())}  # fmt: skip
    abs_mean = np.nanmean(np.abs(pose), axis=0).round(2).tolist()
    kept = dict(zip(*np.unique(t.column("n_samples").to_numpy()[pseudo], return_counts=True), strict=True))
    out = {
        "rows": t.num_rows,
        "rows_by_source": {str(k): int(v) for k, v in sources.items()},
        "identities": len(per_id),
        "images_per_identity": ipi,
        "label_kind": {"pseudo": int(pseudo.sum()), "ground_truth": int((~pseudo).sum())},
        "pose_abs_mean": {k: round(float(v), 2) for k, v in zip(("yaw", "pitch", "roll"), abs_mean, strict=True)},
        "yaw_buckets": {
            "0-30": int((np.abs(pose[:, 0]) < 30).sum()),
            "30-60": int(((np.abs(pose[:, 0]) >= 30) & (np.abs(pose[:, 0]) < 60)).sum()),
            "60-90+": int((np.abs(pose[:, 0]) >= 60).sum()),
        },
        "fit_error_pseudo": {
            "median": round(float(np.nanmedian(fit[pseudo])), 5) if pseudo.any() else None,
            "p95": round(float(np.nanpercentile(fit[pseudo], 95)), 5) if pseudo.any() else None,
        },
        "n_samples_pseudo": {str(k): int(v) for k, v in kept.items()},
    }  # fmt: skip
    out["_arrays"] = (pose, fit[pseudo], per_id)
    return out


def _plots(pose: np.ndarray, fit: np.ndarray, per_id: np.ndarray) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, k, name in zip(axes, range(3), ("yaw", "pitch", "roll"), strict=True):
        ax.hist(pose[:, k][np.isfinite(pose[:, k])], bins=60, range=(-90, 90), color="#4477aa")
        ax.set_title(f"{name} (degrees)")
    fig.tight_layout()
    out["pose_hist.png"] = _png(fig, plt)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].hist(fit[np.isfinite(fit)], bins=50, color="#228833")
    axes[0].set_title("fit_error of pseudo-labels (face size)")
    axes[1].hist(per_id, bins=min(50, max(per_id.max(), 1)), color="#ccbb44")
    axes[1].set_title("images per identity")
    fig.tight_layout()
    out["labels_hist.png"] = _png(fig, plt)
    return out


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def summary_lines(summary: dict) -> list[str]:
    """The card's facts as plain lines (the card and `pltd inspect` print the same)."""
    ipi = summary["images_per_identity"]
    fit = summary["fit_error_pseudo"]
    fit_text = (
        "no pseudo-labels" if fit["median"] is None else f"median {fit['median']:.4f}, 95th percentile {fit['p95']:.4f}"
    )
    return [
        f"Images per identity: min {ipi['min']}, median {ipi['median']:g}, mean {ipi['mean']:.1f}, max {ipi['max']}.",
        f"Labels: {summary['label_kind']['pseudo']:,} pseudo, {summary['label_kind']['ground_truth']:,} ground truth.",
        f"Mean |angle|: {angles_text(summary['pose_abs_mean'])}; |yaw| {buckets_text(summary['yaw_buckets'])}.",
        f"fit_error of pseudo-labels (face size): {fit_text}; samples kept: {kept_text(summary['n_samples_pseudo'])}.",
    ]


def write_card(layout: RunLayout, summary: dict, reconciliation: dict, identities: dict | None, dataset: dict) -> None:
    fs, root = storage.fs_path(layout.pltd)
    pose, fit, per_id = summary.pop("_arrays")
    for name, data in _plots(pose, fit, per_id).items():
        fs.pipe_file(f"{root}/{name}", data)
    header = yaml.safe_dump(front_matter(PLTD, summary["rows"]), sort_keys=False)
    lines = [
        "---",
        header.rstrip("\n"),
        "---",
        "",
        f"# PLTD: {dataset['manifest']}",
        "",
        f"{summary['rows']:,} images, {summary['identities']:,} identities, {len(dataset['shards'])} shards, "
        f"schema version {dataset['schema_version']}. Built by pltd {dataset['pltd_version']}; settings hash "
        f"`{dataset['settings_hash']}`.",
        "",
        "| source | images | rejected on the way |",
        "|---|---|---|",
    ]
    for src, n in summary["rows_by_source"].items():
        r = reconciliation["sources"].get(src, {})
        reasons = ", ".join(f"{k}: {v}" for k, v in r.get("rejected_by_reason", {}).items()) or "none"
        lines.append(f"| {src} | {n:,} | {r.get('rejected', 0):,} ({reasons}) |")
    lines += ["", *summary_lines(summary)]
    if identities:
        lines += [
            "",
            f"Identities: {identities['identities_in']:,} in the sources → {identities['identities_out']:,} after "
            f"merging ({identities['duplicate_pairs_pass1']} duplicate pairs between datasets, "
            f"{identities['duplicate_pairs_pass2_300w_lp']} with 300W-LP base photos; thresholds "
            f"{numbers_text(identities['thresholds'])}).",
        ]
    lines += ["", "![pose](pose_hist.png)", "", "![labels](labels_hist.png)", ""]
    lines += [
        "Columns and conventions: see the pltd README (PLTD schema, pose sign convention). Read with pyarrow,",
        'pandas, polars, DuckDB, Hugging Face `datasets` (`load_dataset("<this folder>")`: `image` is an',
        "`Image` feature), or `pltd.trainer.data.PLTDDataset` for training.",
    ]
    fs.pipe_file(f"{root}/README.md", "\n".join(lines).encode())
