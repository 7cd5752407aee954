"""The stage runner: partitions with fixed ids through Dask, idempotent and resumable.

Each task computes one partition, writes its output and its rejected rows through temporary names,
and writes its completion marker (which carries the partition's stats) last. A rerun skips every
partition whose marker exists, so a crashed build resumes where it stopped.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pltd.pipeline import isolate, storage
from pltd.pipeline.layout import RunLayout, part_name

# compute(*args) -> (accepted table, rejected table, rows in)
Compute = Callable[..., tuple[pa.Table, pa.Table, int]]


@dataclass(frozen=True)
class PartitionTask:
    """One partition of one stage for one source, and where its results go."""

    run: str
    stage: str
    source: str
    part: int

    @property
    def name(self) -> str:
        return part_name(self.part)

    @property
    def output(self) -> str:
        return RunLayout(self.run).output(self.stage, self.source, self.part)

    @property
    def rejected(self) -> str:
        return RunLayout(self.run).rejected(self.stage, self.source, self.part)

    @property
    def marker(self) -> str:
        return RunLayout(self.run).marker(self.stage, self.source, self.part)


def execute(task: PartitionTask, compute: Compute, args: tuple, metadata: dict[str, str]) -> dict:
    """Run on a worker: compute one partition, write output, rejected rows, then the marker."""
    t0 = time.perf_counter()
    with isolate.scope(task.stage, None):
        accepted, rejected, rows_in = compute(*args)
    return write_partition(task, accepted, rejected, rows_in, metadata, t0)


def compute_piece(task: PartitionTask, compute: Compute, args: tuple, ids: tuple[str, ...]) -> tuple:
    """Run on a worker: the partition's stage on the rows `ids` only (a piece of a bisection); nothing written."""
    with isolate.scope(task.stage, frozenset(ids)):
        return compute(*args)


def write_isolated(task: PartitionTask, pieces: list[tuple], crashed: list[str], detail: str, metadata: dict) -> dict:
    """Run on a worker: a bisected partition's pieces (in row order) and its crashing images, written as one."""
    t0 = time.perf_counter()
    crash = isolate.crash_rows(crashed, task.source, task.stage, detail)
    accepted = pa.concat_tables([a for a, _, _ in pieces], promote_options="default")
    rejected = pa.concat_tables([*(r for _, r, _ in pieces), crash], promote_options="default")
    rows_in = sum(n for _, _, n in pieces) + len(crashed)
    return write_partition(task, accepted, rejected, rows_in, metadata, t0, isolated=crashed)


def write_partition(
    task: PartitionTask,
    accepted: pa.Table,
    rejected: pa.Table,
    rows_in: int,
    metadata: dict[str, str],
    t0: float,
    isolated: list[str] | None = None,
) -> dict:
    """Output and rejected rows through temporary names, then the marker: the stats, and each file's
    rows, bytes and checksum (what a resume and `pltd verify` trust the files by)."""
    if accepted.num_rows + rejected.num_rows != rows_in:
        raise RuntimeError(
            f"{task.stage}/{task.source}/{task.name}: {rows_in} rows in but {accepted.num_rows} accepted "
            f"+ {rejected.num_rows} rejected"
        )
    files = {"output": storage.write_parquet(task.output, accepted, metadata), "rejected": None}
    if rejected.num_rows:
        files["rejected"] = storage.write_parquet(task.rejected, rejected, metadata)
    else:
        storage.remove(task.rejected)  # an earlier, interrupted attempt must not leave rows behind
    stats = {
        "stage": task.stage,
        "source": task.source,
        "part": task.part,
        "rows_in": rows_in,
        "rows_out": accepted.num_rows,
        "rejected": dict(Counter(rejected.column("reason").to_pylist())),
        "seconds": round(time.perf_counter() - t0, 4),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "files": files,
    }
    if isolated is not None:
        stats["isolated"] = isolated
    storage.write_json(task.marker, stats)
    return stats


@dataclass
class StageResult:
    stage: str
    done: list[dict] = field(default_factory=list)  # stats of every complete partition
    skipped: int = 0  # partitions complete before this run
    failed: list[tuple[PartitionTask, str]] = field(default_factory=list)
    recomputed: list[tuple[PartitionTask, str]] = field(default_factory=list)  # damaged since their marker
    isolated: list[dict] = field(default_factory=list)  # partitions bisected around images that crash workers
    disk_full: str | None = None  # the file a full disk refused: the stage stopped there
    wall_seconds: float = 0.0

    def summary(self) -> dict:
        rejected: Counter = Counter()
        for s in self.done:
            rejected.update(s["rejected"])
        return {
            "stage": self.stage,
            "partitions": len(self.done),
            "partitions_skipped_complete": self.skipped,
            "partitions_failed": len(self.failed),
            "partitions_recomputed_damaged": len(self.recomputed),
            "isolated": self.isolated,
            "rows_in": sum(s["rows_in"] for s in self.done),
            "rows_out": sum(s["rows_out"] for s in self.done),
            "rejected": dict(sorted(rejected.items())),
            "task_seconds": round(sum(s["seconds"] for s in self.done), 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }


@dataclass
class _Bisection:
    """A partition whose task kept killing its worker, being split until each crash is one image."""

    ids: tuple[str, ...]
    pieces: dict[int, Any] = field(default_factory=dict)  # first row → finished future
    pending: int = 0
    crashed: dict[int, str] = field(default_factory=dict)  # row → image id
    reruns: int = 0
    writes: int = 0


def run_stage(
    client,
    stage: str,
    jobs: list[tuple[PartitionTask, Compute, tuple]],
    metadata: dict[str, str],
    console: Console,
    resources: dict[str, float] | None = None,
    shared: Callable[[], tuple] | None = None,
    whole_rounds: int = 2,
    keys: Callable[[PartitionTask], list[str]] | None = None,
) -> StageResult:
    """Submit every incomplete partition, show progress, gather stats; failures are reported, not fatal.

    Completion comes from one listing of each source's marker folder; the markers of complete
    partitions are then read in one batched call (after the first tasks are submitted) and their
    files' sizes checked against one listing of each output folder: a partition damaged since its
    marker was written is recomputed. `shared()` (values every task needs, e.g. a scattered map) is
    called only when some partition is left to do. A partition whose task kills its worker
    (`KilledWorker`) `whole_rounds` times is bisected (`isolate.py`) on `keys(task)` (the keys of
    the rows its compute reads; without `keys` it fails). A full disk stops the stage.
    """
    from distributed import as_completed

    from pltd.pipeline.verify import size_problems

    result = StageResult(stage)
    t0 = time.perf_counter()
    complete: dict[tuple[str, str, str], set[int]] = {}
    todo, skipped = [], []
    for job in jobs:
        task = job[0]
        key = (task.run, task.stage, task.source)
        if key not in complete:
            complete[key] = RunLayout(task.run).complete_parts(task.stage, task.source)
        (skipped if task.part in complete[key] else todo).append(job)
    tail: list[tuple] = []

    def args_of(job) -> tuple:
        if not tail:
            tail.append(shared() if shared is not None else ())
        return (*job[2], *tail[0])

    pending = as_completed()
    info: dict[Any, tuple] = {}  # future → (kind, job, detail)
    bisections: dict[PartitionTask, _Bisection] = {}

    def submit(kind: str, job, fn, *args, key: str, detail: Any = None) -> None:
        fut = client.submit(fn, *args, key=key, resources=resources, pure=False)
        info[fut] = (kind, job, detail)
        pending.add(fut)

    def submit_whole(job, round_: int = 1) -> None:
        task, compute, _ = job
        key = f"{stage}-{task.source}-{task.name}" + (f"-r{round_}" if round_ > 1 else "")
        submit("whole", job, execute, task, compute, args_of(job), metadata, key=key, detail=round_)

    def submit_piece(job, first: int, ids: tuple[str, ...]) -> None:
        task, compute, _ = job
        b = bisections[task]
        b.pending += 1
        b.reruns += 1
        key = f"{stage}-{task.source}-{task.name}-rows{first}-{first + len(ids)}"
        submit("piece", job, compute_piece, task, compute, args_of(job), ids, key=key, detail=(first, ids))

    for job in todo:
        submit_whole(job)
    markers = storage.read_jsons([job[0].marker for job in skipped])
    by_source: dict[tuple[str, str], list[dict]] = {}
    for m in markers:
        by_source.setdefault((m["stage"], m["source"]), []).append(m)
    bad: dict[tuple[str, int], str] = {}
    for (st, src), ms in by_source.items():
        problems = size_problems(RunLayout(skipped[0][0].run), st, src, ms)
        bad.update({(src, part): why for part, why in problems.items()})
    for job, m in zip(skipped, markers, strict=True):
        task = job[0]
        why = bad.get((task.source, task.part))
        if why is None:
            result.done.append(m)
            continue
        console.print(f"[yellow]damaged[/] {task.stage}/{task.source}/{task.name}: {why}; recomputing")
        storage.remove(task.marker)
        result.recomputed.append((task, why))
        submit_whole(job)
    result.skipped = len(skipped) - len(result.recomputed)
    columns = (
        TextColumn(f"[bold]{stage}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=not info) as progress:
        bar = progress.add_task(stage, total=len(jobs), completed=result.skipped, rows=0)
        rows = sum(s["rows_in"] for s in result.done)
        for fut in pending:
            kind, job, detail = info.pop(fut)
            task = job[0]
            if fut.status == "cancelled":
                continue
            if fut.status == "finished" and kind == "piece":
                b = bisections[task]
                b.pieces[detail[0]] = fut
                b.pending -= 1
                _maybe_write(b, job, submit, metadata)
                continue
            if fut.status == "finished":
                stats = fut.result()
                result.done.append(stats)
                rows += stats["rows_in"]
                if task in bisections:
                    b = bisections.pop(task)
                    result.isolated.append(
                        {"partition": f"{task.source}/{task.name}", "images": stats["isolated"], "reruns": b.reruns}
                    )
                    console.print(
                        f"[yellow]isolated[/] {task.stage}/{task.source}/{task.name}: image(s) "
                        f"{', '.join(stats['isolated'])} crashed the worker (rejected: {isolate.WORKER_CRASH}); "
                        f"{b.reruns} bisection task(s)"
                    )
            else:
                exc = fut.exception()
                if isinstance(exc, storage.NoSpaceError):
                    result.disk_full = exc.filename
                    client.cancel(list(info))
                    break
                if keys is not None and _handle_crash(
                    exc, kind, job, detail, bisections, submit_whole, submit_piece, whole_rounds, keys
                ):
                    if task in bisections and kind != "whole":
                        _maybe_write(bisections[task], job, submit, metadata)
                    fut.release()
                    continue
                msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                result.failed.append((task, msg))
                bisections.pop(task, None)
                client.cancel([f for f, (_, j, _) in info.items() if j[0] == task])
            progress.update(bar, advance=1, rows=rows)
            fut.release()
    result.done.sort(key=lambda s: (s["source"], s["part"]))
    result.wall_seconds = time.perf_counter() - t0
    return result


def _handle_crash(exc, kind, job, detail, bisections, submit_whole, submit_piece, whole_rounds: int, keys) -> bool:
    """A task that killed its worker: rerun it whole, then bisect; True when handled."""
    from distributed import KilledWorker

    if not isinstance(exc, KilledWorker):
        return False
    task = job[0]
    if kind == "whole" and detail < whole_rounds:
        submit_whole(job, detail + 1)
        return True
    if kind == "whole":
        ids = tuple(keys(task))
        bisections[task] = _Bisection(ids)
        first, second = isolate.halves(ids)
        submit_piece(job, 0, first)
        submit_piece(job, len(first), second)
        return True
    if task not in bisections:  # the partition already failed for another reason
        return kind == "piece"
    if kind == "write":
        return True  # written again from the same pieces
    if kind == "piece":
        b = bisections[task]
        b.pending -= 1
        first, ids = detail
        if len(ids) == 1:
            b.crashed[first] = ids[0]
            return True
        left, right = isolate.halves(ids)
        submit_piece(job, first, left)
        submit_piece(job, first + len(left), right)
        return True
    return False


def _maybe_write(b: _Bisection, job, submit, metadata: dict) -> None:
    """Once every piece of a bisection has finished or been narrowed to one image, write the partition."""
    if b.pending:
        return
    task = job[0]
    pieces = [b.pieces[k] for k in sorted(b.pieces)]
    crashed = [b.crashed[k] for k in sorted(b.crashed)]
    detail = "the worker process died running this image alone"
    b.writes += 1
    key = f"{task.stage}-{task.source}-{task.name}-isolated-{b.writes}"
    submit("write", job, write_isolated, task, pieces, crashed, detail, metadata, key=key)
