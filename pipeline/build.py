"""`pltd build`: manifest → plans → stages on a Dask cluster → reconciliation.

Stages that have not landed yet are listed as such in the output and in `RUN/build.json`; the
build never pretends to have run them.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from rich.console import Console

from pltd import __version__
from pltd.pipeline import storage
from pltd.pipeline.config import Manifest
from pltd.pipeline.jobs import stage_jobs, uses_gpu
from pltd.pipeline.plan import make_plan
from pltd.pipeline.publish import identity_map, publish, shard_rows
from pltd.pipeline.reconcile import print_reconciliation, reconcile
from pltd.pipeline.runner import run_stage
from pltd.stages.readers.base import Source, get_reader


@dataclass(frozen=True)
class StageInfo:
    name: str
    implemented: bool
    settings: tuple[str, ...]  # manifest sections whose values decide this stage's output
    issue: int | None = None


STAGES = (
    StageInfo("ingest", True, ("sources", "ingest")),
    StageInfo("landmarks", True, ("landmarks",), 3),
    StageInfo("embeddings", True, ("identities",), 4),
    StageInfo("identities", True, ("identities",), 4),
    StageInfo("assemble", True, ("output",), 5),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


class BuildError(RuntimeError):
    """A build that cannot finish; the message says what to do."""


class StartupError(BuildError):
    """A build refused before any work starts (settings, model files)."""


def sources_of(manifest: Manifest) -> list[Source]:
    return [Source(s.name, s.format, s.root, s.reader_options()) for s in manifest.sources]


def check_sources(manifest: Manifest) -> None:
    """Whole-source problems (missing root, index, boxes file) stop the build before it starts."""
    for src in sources_of(manifest):
        get_reader(src.format).check(src)


def check_models(manifest: Manifest) -> None:
    """Model files the manifest names must exist before any work starts (workers would all fail)."""
    lm = manifest.landmarks
    files = {  # field: (required by the chosen backend, path)
        "landmarks.teacher_checkpoint": (lm.teacher == "resnet50", lm.teacher_checkpoint),
        "landmarks.blink_checkpoint": (lm.blink == "resnet18", lm.blink_checkpoint),
        "landmarks.index_map": (False, lm.index_map),
        "landmarks.mean_face": (False, lm.mean_face),
    }
    ident = manifest.identities
    if ident is not None:
        for k, (net, ckpt) in enumerate(zip(ident.networks, ident.checkpoints, strict=True)):
            files[f"identities.checkpoints.{k}"] = (net != "dlib", ckpt)
        files["identities.calibration_pairs"] = (ident.thresholds is None, ident.calibration_pairs)
        if ident.calibration_pairs and not ident.calibration_pairs.endswith(".bin"):
            files["identities.calibration_images"] = (True, ident.calibration_images)
    for field, (required, path) in files.items():
        if path is None and required:
            raise StartupError(f"{field} is required by the chosen backend: name the model file in the manifest")
        if path is not None and not storage.exists(path):
            raise StartupError(f"{field}: model file {path} not found")


def _stage_hashes(manifest: Manifest) -> dict[str, str]:
    return {s.name: manifest.section_hash(*s.settings) for s in STAGES}


def prepare_run(run: str, manifest: Manifest, manifest_path: str, force: list[str], console: Console) -> None:
    """Refuse to mix settings in one RUN, apply --force, write manifest.resolved.yaml."""
    unknown = [f for f in force if f not in STAGE_NAMES]
    if unknown:
        raise StartupError(f"--force {unknown[0]}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
    resolved_url = storage.join(run, "manifest.resolved.yaml")
    hashes = _stage_hashes(manifest)
    first_forced = min((STAGE_NAMES.index(f) for f in force), default=len(STAGES))
    if storage.exists(resolved_url):
        fs, path = storage.fs_path(resolved_url)
        with fs.open(path, "r") as f:
            old = yaml.safe_load(f) or {}
        for i, stage in enumerate(STAGES):
            before = (old.get("stage_settings_hash") or {}).get(stage.name)
            if i < first_forced and stage.implemented and before and before != hashes[stage.name]:
                raise StartupError(
                    f"{run} was built with different settings for stage '{stage.name}' "
                    f"(sections: {', '.join(stage.settings)}). Use --force {stage.name} to recompute it, "
                    "or a new --out directory."
                )
    for stage in STAGE_NAMES[first_forced:]:  # a forced stage invalidates everything after it
        storage.remove(storage.join(run, stage))
        storage.remove(storage.join(run, "rejected", stage))
        if stage == "ingest":
            storage.remove(storage.join(run, "plan"))
        if stage == "assemble":
            storage.remove(storage.join(run, "pltd"))  # the shards are cut from assemble's files
        if first_forced < len(STAGES):
            console.print(f"--force: cleared stage [bold]{stage}[/]")
    doc = {
        "pltd_version": __version__,
        "manifest_file": str(manifest_path),
        "resolved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stage_settings_hash": hashes,
        "manifest": manifest.model_dump(mode="json"),
    }
    fs, path = storage.fs_path(resolved_url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    stale = storage.remove_stale_temporaries(run)
    if stale:
        console.print(f"removed {stale} temporary file(s) left by an interrupted run")


def _audit(run: str, sources: list[Source], console: Console) -> None:
    """Pseudo-labels against ground truth for sources that have it; saved and printed."""
    from pltd.stages.landmarks.audit import audit, format_audit

    with_gt = [s.name for s in sources if s.format in ("300w_lp", "aflw2000")]
    if not with_gt:
        return
    fs, _ = storage.fs_path(run)
    files = [
        p
        for s in with_gt
        for p in sorted(fs.glob(storage.fs_path(storage.join(run, "landmarks", s))[1] + "/part-*.parquet"))
    ]
    tables = []
    for p in files:
        with fs.open(p, "rb") as f:
            tables.append(pa.Table.from_batches(pq.ParquetFile(f).iter_batches()))
    if not tables:
        return
    report = audit(pa.concat_tables(tables))
    storage.write_json(storage.join(run, "audit", "landmarks.json"), report)
    for line in format_audit(report):
        console.print(line, highlight=False)


def build(
    manifest: Manifest,
    manifest_path: str,
    run: str,
    profile,
    force: list[str],
    console: Console,
    until: str | None = None,
) -> dict:
    """Run every implemented stage; returns the reconciliation report (also in RUN/)."""
    from pltd.pipeline.cluster import connect

    t0 = time.perf_counter()
    check_sources(manifest)
    check_models(manifest)
    prepare_run(run, manifest, manifest_path, force, console)
    sources = sources_of(manifest)
    plans = {s.name: make_plan(run, s, manifest.ingest.rows_per_partition) for s in sources}
    for p in plans.values():
        ignored = ", ".join(f"{k}={v}" for k, v in p["ignored"].items())
        console.print(
            f"plan [bold]{p['source']}[/] ({p['format']}): {p['images']} images in {p['partitions']} partitions"
            + (f"; not images: {ignored}" if ignored else "")
        )
    ran = stages_to_run(manifest, until)
    per_image = [s for s in ran if s != "identities"]
    identity_report = dataset = None
    with connect(profile) as client:
        workers = client.scheduler_info().get("workers", {})
        gpu_workers = sum(1 for w in workers.values() if (w.get("resources") or {}).get("GPU"))
        console.print(
            f"Dask dashboard: [link]{client.dashboard_link}[/link]  ({len(workers)} workers, {gpu_workers} with a GPU)"
        )
        for stage in ran:
            if stage == "identities":
                from pltd.pipeline.identities import run_identities

                identity_report = run_identities(client, run, manifest.identities, sources, plans, console)
                continue
            extra: tuple = ()
            if stage == "assemble":  # the id map goes to every worker once, not with every task
                before = per_image[per_image.index("assemble") - 1]
                extra = (client.scatter(identity_map(run, sources, plans), broadcast=True), before)
            resources = {"GPU": 1} if gpu_workers and uses_gpu(stage, manifest) else None
            _run_partition_stage(client, stage, run, manifest, sources, plans, extra, resources, console)
            if stage == "landmarks":
                _audit(run, sources, console)
        report = reconcile(run, {k: v["images"] for k, v in plans.items()}, per_image[-1], per_image)
        if "assemble" in ran:
            dataset = publish(client, run, manifest, sources, plans, report, identity_report, console)
            report["pltd_rows"] = shard_rows(run)
            report["ok"] &= report["pltd_rows"] == report["total"]["accepted"]
    pending = [s for s in STAGES if not s.implemented]
    skipped = [s for s in STAGES if s.implemented and s.name not in ran]
    report["stages_not_implemented"] = [f"{s.name} (issue #{s.issue})" for s in pending]
    storage.write_json(storage.join(run, "reconciliation.json"), report)
    print_reconciliation(report, console)
    storage.write_json(
        storage.join(run, "build.json"),
        {
            "stages_run": ran,
            "stages_not_implemented": report["stages_not_implemented"],
            "stages_not_run": [s.name for s in skipped],
            "identities": identity_report,
            "pltd": dataset,
            "plans": plans,
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "balanced": report["ok"],
        },
    )
    console.print(f"Stages run: [bold]{', '.join(ran)}[/].")
    if skipped:
        reason = f"--until {until}" if until else "no identities section in the manifest"
        console.print(f"Not run ({reason}): {', '.join(s.name for s in skipped)}.")
    if pending:
        console.print("Not implemented yet, so not run: " + ", ".join(report["stages_not_implemented"]) + ".")
    if dataset is None:
        console.print(f"The run holds the rows of '{per_image[-1]}' ({run}/{per_image[-1]}/), not a PLTD.")
    if not report["ok"]:
        raise BuildError(f"counts do not reconcile; see {run}/reconciliation.json")
    return report


def stages_to_run(manifest: Manifest, until: str | None) -> list[str]:
    ran = [s.name for s in STAGES if s.implemented]
    if until is not None:
        if until not in STAGE_NAMES:
            raise StartupError(f"--until {until}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
        ran = [s for s in ran if STAGE_NAMES.index(s) <= STAGE_NAMES.index(until)]
    if manifest.identities is None:
        ran = [s for s in ran if s not in ("embeddings", "identities")]
    return ran


def _run_partition_stage(client, stage, run, manifest, sources, plans, extra, resources, console) -> None:
    hashes = _stage_hashes(manifest)
    meta = {"stage": stage, "manifest": manifest.name, "settings_hash": hashes[stage]}
    jobs = stage_jobs(stage, run, manifest, sources, plans, extra)
    result = run_stage(client, stage, jobs, meta, console, resources=resources)
    summary = result.summary()
    storage.write_json(storage.join(run, "stats", f"{stage}.json"), summary)
    console.print(
        f"{stage}: {summary['rows_in']} in, {summary['rows_out']} out, rejected {summary['rejected'] or 0}; "
        f"{summary['partitions']} partitions ({summary['partitions_skipped_complete']} already complete), "
        f"{summary['wall_seconds']:.1f} s"
    )
    if result.failed:
        for task, detail in result.failed[:10]:
            console.print(f"[red]failed[/] {task.stage}/{task.source}/{task.name}: {detail}")
        raise BuildError(
            f"{len(result.failed)} partition(s) of stage '{stage}' failed; fix the cause and rerun the same "
            "command: complete partitions are kept"
        )
