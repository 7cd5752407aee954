"""The PLTD's last steps: the identity map for `assemble`, then shards, dataset.json and the card."""

from __future__ import annotations

import pyarrow.parquet as pq
from rich.console import Console

from pltd import __version__
from pltd.pipeline import storage
from pltd.pipeline.card import summarize, write_card
from pltd.pipeline.config import Manifest
from pltd.pipeline.runner import PartitionTask
from pltd.pipeline.shards import shard_plan, staging_files, write_shard
from pltd.schemas import PLTD, SCHEMA_VERSION
from pltd.stages.identities.embed import identity_of


def identity_map(run: str, sources, plans: dict) -> dict[tuple[str, str], int]:
    """(source, identity) → face_id: the identities stage's map, or, without it, one id per source identity."""
    url = storage.join(run, "identities", "id_map.parquet")
    if storage.exists(url):
        t = storage.read_table(url, columns=["source", "source_label", "face_id"])
        return {(s, lab): int(f) for s, lab, f in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True)}
    keys = set()
    for s in sources:
        for p in range(plans[s.name]["partitions"]):
            t = storage.read_table(
                PartitionTask(run, "ingest", s.name, p).output, ["image_id", "source_label", "base_id"]
            )
            keys.update((s.name, identity_of(r)) for r in t.to_pylist())
    return {k: i for i, k in enumerate(sorted(keys))}


def publish(
    client, run: str, manifest: Manifest, sources, plans: dict, reconciliation: dict, identities, console: Console
):
    """Cut the assemble stage's files into shards, then write the card and dataset.json (last)."""
    done = storage.join(run, "pltd", "dataset.json")
    if storage.exists(done):
        console.print("pltd: shards already written")
        return storage.read_json(done)
    storage.remove(storage.join(run, "pltd"))  # a publish killed half-way leaves nothing to trust
    out = manifest.output
    files = staging_files(run, [s.name for s in sources], {s.name: plans[s.name]["partitions"] for s in sources})
    shards = shard_plan(files, out.rows_per_shard, out.bytes_per_shard)
    settings_hash = manifest.section_hash("sources", "ingest", "landmarks", "identities", "output")
    meta = {"stage": "pltd", "manifest": manifest.name, "settings_hash": settings_hash}
    futures = [
        client.submit(write_shard, storage.join(run, "pltd", f"{storage.part_name(i)}.parquet"), pieces, PLTD,
                      out.row_group_rows, meta, pure=False)
        for i, pieces in enumerate(shards)
    ]  # fmt: skip
    written = client.gather(futures)
    summary = summarize(run)
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
    }
    if summary["rows"]:
        write_card(run, summary, reconciliation, identities, dataset)
    dataset["summary"] = summary
    storage.write_json(done, dataset)
    console.print(
        f"pltd: {dataset['rows']} rows, {dataset['identities']} identities in {len(written)} shards "
        f"({run}/pltd/, card: {run}/pltd/README.md)"
    )
    return dataset


def shard_rows(run: str) -> int:
    fs, root = storage.fs_path(storage.join(run, "pltd"))
    total = 0
    for p in fs.glob(root + "/part-*.parquet"):
        with fs.open(p, "rb") as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total
