"""The dataset card of a PLTD: `RUN/pltd/README.md` with PNG plots, and the same summary for
`pltd inspect`. Its statistics are computed per shard on the workers and merged (`card_stats.py`)."""

from __future__ import annotations

import io

import numpy as np
import yaml

from pltd.pipeline import storage
from pltd.pipeline.card_stats import POSE_EDGES
from pltd.pipeline.card_stats import summarize as summarize  # the card's summary (statistics merged per shard)
from pltd.pipeline.hf import front_matter
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.text import angles_text, buckets_text, kept_text, numbers_text
from pltd.schemas import PLTD


def _plots(pose_hist: np.ndarray, fit: tuple[np.ndarray, np.ndarray] | None, per_id: np.ndarray) -> dict[str, bytes]:
    """The card's plots from the merged histograms (`card_stats.py`): no row reaches the driver."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, k, name in zip(axes, range(3), ("yaw", "pitch", "roll"), strict=True):
        ax.stairs(pose_hist[k], POSE_EDGES, fill=True, color="#4477aa")
        ax.set_title(f"{name} (degrees)")
    fig.tight_layout()
    out["pose_hist.png"] = _png(fig, plt)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    if fit is not None:
        axes[0].stairs(fit[1], fit[0], fill=True, color="#228833")
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
    pose_hist, fit, per_id = summary.pop("_arrays")
    for name, data in _plots(pose_hist, fit, per_id).items():
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
        *([f"Landmarks: {dataset['landmarks']}.", ""] if dataset.get("landmarks") else []),
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
