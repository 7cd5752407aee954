"""`pltd build`: check, prepare, plan, run each stage, reconcile, publish.

The stages themselves are declared in `catalog.py`; this file walks them and knows none by name.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import time

import yaml
from rich.console import Console

from pltd import __version__
from pltd.pipeline import lock, storage
from pltd.pipeline.catalog import STAGE_NAMES, STAGES
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout, part_rows
from pltd.pipeline.partition import Job, PartitionTask
from pltd.pipeline.plan import make_plan
from pltd.pipeline.publish import publish
from pltd.pipeline.reconcile import print_reconciliation, reconcile
from pltd.pipeline.runner import run_stage
from pltd.pipeline.stage import PACKAGES, BuildContext, Stage
from pltd.pipeline.text import counts_text
from pltd.pipeline.watch import NoWorkersError, Watch
from pltd.stages.readers.base import Source, get_reader


class BuildError(RuntimeError):
    """A build that cannot finish; the message says what to do."""


class StartupError(BuildError):
    """A build refused before any work starts (settings, model files, packages)."""


def disk_full(path: str) -> str:
    return f"no space left on device writing {path}; free space and rerun the same command (complete parts are kept)"


def no_workers(exc: NoWorkersError, ctx: BuildContext, resume: str | None) -> str:
    """The one line a build without workers stops with: since when, what is kept, how to go on."""
    layout = ctx.layout
    done = sum(len(layout.complete_parts(st, s.name)) for st in STAGE_NAMES for s in ctx.sources)
    return f"{exc}; {done} complete partition(s) are kept in {ctx.run}; once workers are back, resume with: " + (
        resume or "the same command"
    )


def sources_of(manifest: Manifest) -> list[Source]:
    return [Source(s.name, s.format, s.root, s.reader_options()) for s in manifest.sources]


def stages_to_run(manifest: Manifest, until: str | None) -> list[Stage]:
    if until is not None and until not in STAGE_NAMES:
        raise StartupError(f"--until {until}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
    unknown = sorted(set(manifest.limits.partition_seconds) - set(STAGE_NAMES))
    if unknown:
        raise StartupError(f"limits.partition_seconds.{unknown[0]}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
    last = STAGE_NAMES.index(until) if until else len(STAGES)
    return [s for i, s in enumerate(STAGES) if i <= last and s.enabled(manifest)]


def check(ctx: BuildContext, stages: list[Stage]) -> None:
    """Everything that would make every worker fail is refused before any work starts."""
    may_be_empty = {s.name for s in ctx.manifest.sources if s.allow_empty}
    for src in ctx.sources:  # whole-source problems: missing root, index, boxes file
        get_reader(src.format).check(src)
        fs, root = src.fs()
        if src.name not in may_be_empty and fs.isdir(root) and not fs.ls(root):  # an empty folder: no listing
            raise StartupError(_empty(src))
    for stage in stages:  # packages first: a missing package explains its missing shipped files
        for pkg in sorted(stage.packages(ctx.manifest)):
            if importlib.util.find_spec(pkg) is None:
                raise StartupError(
                    f"stage '{stage.name}' needs the package {pkg!r} with these settings, and it is not installed: "
                    f"pip install {PACKAGES.get(pkg, pkg)}"
                )
        for field, (required, path) in stage.model_files(ctx.manifest).items():
            if path is None and required:
                raise StartupError(f"{field} is required by the chosen backend: name the model file in the manifest")
            if path is not None and not storage.exists(path):
                kind, hint = _file_kind(field)
                raise StartupError(f"{field}: {kind} {path} not found{hint}")
        for choice in stage.backends(ctx.manifest):  # inside the files: task, architecture, shapes
            try:
                choice.check()
            except (OSError, ValueError) as exc:
                raise StartupError(str(exc)) from None


def _file_kind(field: str) -> tuple[str, str]:
    """What a missing file is called in the start-up error, and a hint; only the calibration files are no models."""
    if field == "identities.calibration_pairs":
        return "calibration pairs file", (
            "; `pltd sample --out DIR` writes the embedded sample's (DIR/calibration/lfw_subset_pairs.bin)"
        )
    return ("calibration images folder" if field == "identities.calibration_images" else "model file"), ""


def prepare(ctx: BuildContext, manifest_path: str, force: list[str]) -> None:
    """Refuse to mix settings in one RUN, apply --force, write manifest.resolved.yaml."""
    unknown = [f for f in force if f not in STAGE_NAMES]
    if unknown:
        raise StartupError(f"--force {unknown[0]}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
    layout, manifest = ctx.layout, ctx.manifest
    hashes = {s.name: s.settings_hash(manifest) for s in STAGES}
    first_forced = min((STAGE_NAMES.index(f) for f in force), default=len(STAGES))
    try:
        fs, path = storage.fs_path(layout.resolved)
        with fs.open(path, "r") as f:
            old = (yaml.safe_load(f) or {}).get("stage_settings_hash") or {}
    except FileNotFoundError:
        old = {}
    for stage in STAGES[:first_forced]:
        before = old.get(stage.name)
        if before and before != hashes[stage.name]:
            raise StartupError(
                f"{ctx.run} was built with different settings for stage '{stage.name}' "
                f"(sections: {', '.join(stage.sections)}). Use --force {stage.name} to recompute it, "
                "or a new --out directory."
            )
    for stage in STAGES[first_forced:]:  # a forced stage invalidates everything after it
        for url in [*layout.owned_by(stage.name), *(layout.url(c) for c in stage.clears)]:
            storage.remove(url)
        ctx.console.print(f"--force: cleared stage [bold]{stage.name}[/]")
    doc = {
        "pltd_version": __version__,
        "manifest_file": str(manifest_path),
        "resolved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stage_settings_hash": hashes,
        "manifest": manifest.model_dump(mode="json"),
    }
    fs, path = storage.fs_path(layout.resolved)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    stale = storage.remove_stale_temporaries(ctx.run)
    if stale:
        ctx.console.print(f"removed {stale} temporary file(s) left by an interrupted run")


def _empty(s: Source, ignored: str = "") -> str:
    return (
        f"source '{s.name}': no images under {s.root} (format {s.format}"
        + (f"; not images: {ignored}" if ignored else "")
        + "); fix the root, or set `allow_empty: true` on the source"
    )


def plan(ctx: BuildContext) -> None:
    """Fix every image's partition (or reuse the run's plans)."""
    may_be_empty = {s.name for s in ctx.manifest.sources if s.allow_empty}
    for s in ctx.sources:
        p = ctx.plans[s.name] = make_plan(ctx.run, s, ctx.manifest.ingest.rows_per_partition, ctx.client)
        ignored = ", ".join(f"{k}={v}" for k, v in p["ignored"].items())
        if not p["images"] and s.name not in may_be_empty:
            raise StartupError(_empty(s, ignored))
        ctx.console.print(
            f"plan [bold]{p['source']}[/] ({p['format']}): {p['images']} images in {p['partitions']} partitions"
            + (f"; not images: {ignored}" if ignored else "")
        )


def run_partition_stage(ctx: BuildContext, stage: Stage, watch: Watch | None = None) -> None:
    manifest = ctx.manifest
    meta = {"stage": stage.name, "manifest": manifest.name, "settings_hash": stage.settings_hash(manifest)}
    settings = stage.settings(manifest)
    jobs = [
        Job(PartitionTask(ctx.run, stage.name, s.name, part), stage.compute, (ctx.layout, s, part, settings))
        for s, part in ctx.partitions()
    ]
    resources = {"GPU": 1} if ctx.gpu_workers and stage.wants_gpu(manifest) else None
    sources = {s.name: s for s in ctx.sources}
    result = run_stage(
        ctx.client,
        stage.name,
        jobs,
        meta,
        ctx.console,
        resources=resources,
        shared=lambda: stage.shared(ctx),
        keys=lambda task: stage.row_keys(ctx.layout, sources[task.source], task.part),
        time_limit=manifest.limits.partition_seconds.get(stage.name),
        watch=watch,
    )
    if result.disk_full:
        raise BuildError(disk_full(result.disk_full))
    summary = result.summary()
    storage.write_json(ctx.layout.stats(stage.name), summary)
    ctx.console.print(
        f"{stage.name}: {summary['rows_in']} in, {summary['rows_out']} out, "
        f"rejected {counts_text(summary['rejected'])}; "
        f"{summary['partitions']} partitions ({summary['partitions_skipped_complete']} already complete), "
        f"{summary['wall_seconds']:.1f} s"
    )
    if result.failed:
        for task, detail in result.failed[:10]:
            ctx.console.print(f"[red]failed[/] {task.stage}/{task.source}/{task.name}: {detail}")
        raise BuildError(
            f"{len(result.failed)} partition(s) of stage '{stage.name}' failed; fix the cause and rerun the same "
            "command: complete partitions are kept"
        )


def build(
    manifest: Manifest,
    manifest_path: str,
    run: str,
    profile,
    force: list[str],
    console: Console,
    until: str | None = None,
    worker_logs: str | None = None,
    resume: str | None = None,
) -> dict:
    """Run the manifest's stages; returns the reconciliation report (also in RUN/).

    `worker_logs`: a folder for the local workers' stderr (MediaPipe/TFLite/absl logging); None
    leaves it on the terminal. `resume`: the command that resumes this build, for the messages of
    stops that leave complete partitions behind."""
    from distributed.scheduler import NoWorkerError

    from pltd.pipeline.cluster import ClusterError, connect, dashboard_link, reachable

    t0 = time.perf_counter()
    ctx = BuildContext(manifest, RunLayout(run), console, sources_of(manifest))
    stages = stages_to_run(manifest, until)
    check(ctx, stages)
    try:
        reachable(profile)  # a dead scheduler address is a start-up error, before RUN is touched
    except ClusterError as exc:
        raise StartupError(str(exc)) from None
    fresh, refused, watch = not storage.exists(run), False, None
    try:
        held = lock.acquire(ctx.layout, say=console.print)  # one writer per run
    except lock.LockHeld as exc:
        raise StartupError(str(exc)) from None
    try:
        prepare(ctx, manifest_path, force)
        per_image = [s.name for s in stages if s.kind == "partition"]
        dataset = None
        with connect(profile, worker_logs) as client:
            ctx.client = client
            restarts = profile.worker_restarts if profile.kind == "local" else 0
            watch = Watch(client, console, manifest.limits, restarts)
            workers = client.scheduler_info().get("workers", {})
            ctx.gpu_workers = sum(1 for w in workers.values() if (w.get("resources") or {}).get("GPU"))
            link = dashboard_link(client)
            shown = f"[link]{link}[/link]" if link else "none (`pip install bokeh` where the scheduler runs)"
            console.print(
                f"Dask dashboard: {shown}  ({len(workers)} workers, {ctx.gpu_workers} with a GPU"
                + (f": GPU stages run on those, the others on all {len(workers)})" if ctx.gpu_workers else ")")
            )
            if worker_logs and profile.kind == "local":
                console.print(f"worker logs (MediaPipe, TFLite, Dask): {worker_logs}/  (`pltd -v build` shows them)")
            plan(ctx)  # folder trees are listed on the workers
            for stage in stages:
                stage.before(ctx)
                if stage.kind == "global":
                    started = time.perf_counter()
                    ctx.results[stage.name] = stage.run_global(ctx)
                    seconds = round(time.perf_counter() - started, 3)
                    storage.write_json(ctx.layout.stats(stage.name), {"kind": "global", "wall_seconds": seconds})
                else:
                    run_partition_stage(ctx, stage, watch)
                stage.after(ctx)
            report = reconcile(ctx.layout, ctx.images_in(), per_image[-1], per_image)
            if stages[-1] is STAGES[-1]:  # the whole catalog ran: cut the PLTD
                dataset = publish(ctx, report)
                report["pltd_rows"] = part_rows(ctx.layout.pltd)
                report["ok"] &= report["pltd_rows"] == report["total"]["accepted"]
        return _finish(ctx, stages, report, dataset, until, time.perf_counter() - t0)
    except storage.NoSpaceError as exc:
        raise BuildError(disk_full(exc.filename)) from None
    except NoWorkersError as exc:
        raise BuildError(no_workers(exc, ctx, resume)) from None
    except NoWorkerError:  # a task outside the runner (planning, a global stage) met the scheduler's timeout
        raise BuildError(no_workers(watch.no_workers(), ctx, resume)) from None
    except StartupError:
        refused = fresh
        raise
    finally:
        lock.release(ctx.layout, held)
        if refused:  # a refused build leaves no half-made run directory behind
            storage.remove(run)


def _finish(ctx: BuildContext, stages: list[Stage], report: dict, dataset, until, seconds: float) -> dict:
    ran = [s.name for s in stages]
    skipped = [s for s in STAGE_NAMES if s not in ran]
    storage.write_json(ctx.layout.reconciliation, report)
    print_reconciliation(report, ctx.console)
    storage.write_json(
        ctx.layout.build_json,
        {
            "stages_run": ran,
            "stages_not_run": skipped,
            "identities": ctx.results.get("identities"),
            "pltd": dataset,
            "plans": ctx.plans,
            "wall_seconds": round(seconds, 3),
            "balanced": report["ok"],
        },
    )
    ctx.console.print(f"Stages run: [bold]{', '.join(ran)}[/].")
    if skipped:
        reason = f"--until {until}" if until else "no identities section in the manifest"
        ctx.console.print(f"Not run ({reason}): {', '.join(skipped)}.")
    if dataset is None:
        final = report["final_stage"]
        ctx.console.print(f"The run holds the rows of '{final}' ({ctx.run}/{final}/), not a PLTD.")
    if not report["ok"]:
        raise BuildError(f"counts do not reconcile; see {ctx.layout.reconciliation}")
    return report
