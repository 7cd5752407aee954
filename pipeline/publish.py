"""The PLTD's last steps: the identity map for `assemble`, then shards, dataset.json and the card."""

from __future__ import annotations

from pltd import __version__
from pltd.pipeline import storage
from pltd.pipeline.card import write_card
from pltd.pipeline.card_stats import summarize
from pltd.pipeline.shards import shard_plan, staging_files, write_shard
from pltd.pipeline.stage import BuildContext
from pltd.schemas import JAW_STYLES, PLTD, SCHEMA_VERSION
from pltd.stages.identities.embed import identity_of

PLTD_SECTIONS = ("sources", "ingest", "landmarks", "identities", "output")  # what decides the PLTD's rows


def identity_map(ctx: BuildContext) -> dict[tuple[str, str], int]:
    """(source, identity) → face_id: the identities stage's map, or, without it, one id per source identity."""
    layout = ctx.layout
    try:
        t = storage.read_table(layout.stage_file("identities", "id_map.parquet"), ["source", "source_label", "face_id"])
    except FileNotFoundError:
        t = None
    if t is not None:
        return {(s, lab): int(f) for s, lab, f in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True)}
    keys = set()
    for s, p in ctx.partitions():
        rows = storage.read_table(layout.output("ingest", s.name, p), ["image_id", "source_label", "base_id"])
        keys.update((s.name, identity_of(r)) for r in rows.to_pylist())
    return {k: i for i, k in enumerate(sorted(keys))}


def publish(ctx: BuildContext, reconciliation: dict) -> dict:
    """Cut the assemble stage's files into shards, then write the card and dataset.json (last)."""
    layout, manifest, console = ctx.layout, ctx.manifest, ctx.console
    try:
        dataset = storage.read_json(layout.dataset_json)
        console.print("pltd: shards already written")
        return dataset
    except FileNotFoundError:
        pass
    storage.remove(layout.pltd)  # a publish killed half-way leaves nothing to trust
    out = manifest.output
    files = staging_files(layout, [(s.name, p) for s, p in ctx.partitions()])
    shards = shard_plan(files, out.rows_per_shard, out.bytes_per_shard)
    settings_hash = manifest.section_hash(*PLTD_SECTIONS)
    # every label of a PLTD has one jaw style (points 0–16): readers must know which one they train on
    jaw_style = manifest.landmarks.jaw_style
    meta = {"stage": "pltd", "manifest": manifest.name, "settings_hash": settings_hash, "jaw_style": jaw_style}
    futures = [
        ctx.client.submit(write_shard, layout.shard(i), pieces, PLTD, out.row_group_rows, meta, pure=False)
        for i, pieces in enumerate(shards)
    ]
    written = ctx.client.gather(futures)
    summary = summarize(layout, ctx.client)  # per-shard statistics on the workers, merged here
    dataset = {
        "schema_version": SCHEMA_VERSION,
        "pltd_version": __version__,
        "manifest": manifest.name,
        "settings_hash": settings_hash,
        "rows": sum(w["rows"] for w in written),
        "rows_by_source": summary.get("rows_by_source", {}),
        "identities": summary.get("identities", 0),
        "shards": written,
        "columns": [f.name for f in PLTD],
        "pose": "yaw, pitch, roll in degrees; sign convention in the pltd README",
        "jaw_style": jaw_style,
        "landmarks": f"68 iBUG points in region pixels; jaw points 0-16 {JAW_STYLES[jaw_style]}",
    }
    if summary["rows"]:
        write_card(layout, summary, reconciliation, ctx.results.get("identities"), dataset)
    dataset["summary"] = summary
    storage.write_json(layout.dataset_json, dataset)
    console.print(
        f"pltd: {dataset['rows']} rows, {dataset['identities']} identities in {len(written)} shards "
        f"({layout.pltd}/, card: {layout.pltd}/README.md)"
    )
    return dataset
