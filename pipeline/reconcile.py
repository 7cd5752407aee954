"""The final account: images in (+ faces beyond the first of a photo, for sources with a face
detector) = accepted + rejected, per source and per reason.

Counts come from the files themselves (Parquet footers and the rejected rows), not from what the
tasks claimed, so a lost or duplicated partition shows up here.
"""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout, part_files, part_rows, read_parts


def reconcile(layout: RunLayout, images_in: dict[str, int], final_stage: str, stages_run: list[str]) -> dict:
    """Count accepted rows of `final_stage` and rejected rows of every stage run, per source."""
    report: dict = {"final_stage": final_stage, "stages_run": stages_run, "sources": {}, "ok": True}
    for source, n_in in sorted(images_in.items()):
        accepted = part_rows(layout.stage_dir(final_stage, source))
        reasons: Counter = Counter()
        for stage in stages_run:
            rejected = read_parts(layout.rejected_dir(stage, source), columns=["reason"])
            if rejected is not None:
                reasons.update(f"{stage}:{r}" for r in rejected.column("reason").to_pylist())
        rejected = sum(reasons.values())
        split = faces_beyond_first(layout, source)  # photos a face detector made several rows of
        ok = n_in + split == accepted + rejected
        report["ok"] &= ok
        report["sources"][source] = {
            "images_in": n_in,
            "faces_beyond_first": split,
            "accepted": accepted,
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(reasons.items())),
            "balanced": ok,
        }
    totals = [report["sources"][s] for s in report["sources"]]
    report["total"] = {k: sum(t[k] for t in totals) for k in ("images_in", "accepted", "rejected")}
    return report


def faces_beyond_first(layout: RunLayout, source: str) -> int:
    """Ingest rows (accepted or rejected) of faces with index ≥ 1: one photo in, several rows out. Read
    from the files' `face_index` column; files written before the column (schema 1) have none."""
    from pltd.stages.detect_faces import faces_beyond_first as count

    n = 0
    for url in (*part_files(layout.stage_dir("ingest", source)), *part_files(layout.rejected_dir("ingest", source))):
        fs, path = storage.fs_path(url)
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            if "face_index" in pf.schema_arrow.names:
                t = pf.read(columns=["face_index"])
                n += count(t, t.schema.empty_table())
    return n


def print_reconciliation(report: dict, console: Console) -> None:
    table = Table(title=f"Reconciliation (accepted = rows out of '{report['final_stage']}')")
    for col in ("source", "images in", "accepted", "rejected", "by reason", "balanced"):
        table.add_column(col, justify="right" if col in ("images in", "accepted", "rejected") else "left")
    for name, s in report["sources"].items():
        reasons = ", ".join(f"{k}={v}" for k, v in s["rejected_by_reason"].items()) or "-"
        table.add_row(
            name,
            str(s["images_in"]),
            str(s["accepted"]),
            str(s["rejected"]),
            reasons,
            "[green]yes[/]" if s["balanced"] else "[red]NO[/]",
        )
    t = report["total"]
    table.add_row("[bold]total", str(t["images_in"]), str(t["accepted"]), str(t["rejected"]), "", "")
    console.print(table)
