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

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pltd.pipeline import storage
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
    accepted, rejected, rows_in = compute(*args)
    if accepted.num_rows + rejected.num_rows != rows_in:
        raise RuntimeError(
            f"{task.stage}/{task.source}/{task.name}: {rows_in} rows in but {accepted.num_rows} accepted "
            f"+ {rejected.num_rows} rejected"
        )
    storage.write_parquet(task.output, accepted, metadata)
    if rejected.num_rows:
        storage.write_parquet(task.rejected, rejected, metadata)
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
    }
    storage.write_json(task.marker, stats)
    return stats


@dataclass
class StageResult:
    stage: str
    done: list[dict] = field(default_factory=list)  # stats of every complete partition
    skipped: int = 0  # partitions complete before this run
    failed: list[tuple[PartitionTask, str]] = field(default_factory=list)
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
            "rows_in": sum(s["rows_in"] for s in self.done),
            "rows_out": sum(s["rows_out"] for s in self.done),
            "rejected": dict(sorted(rejected.items())),
            "task_seconds": round(sum(s["seconds"] for s in self.done), 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }


def run_stage(
    client,
    stage: str,
    jobs: list[tuple[PartitionTask, Compute, tuple]],
    metadata: dict[str, str],
    console: Console,
    resources: dict[str, float] | None = None,
    shared: Callable[[], tuple] | None = None,
) -> StageResult:
    """Submit every incomplete partition, show progress, gather stats; failures are reported, not fatal.

    Completion comes from one listing of each source's marker folder. `shared()` (values every task
    needs, e.g. a scattered map) is called only when some partition is left to do; its values are
    appended to each task's arguments. The stats of partitions complete before this run are read
    after the first tasks are submitted, in one batched call.
    """
    from distributed import as_completed

    result = StageResult(stage)
    t0 = time.perf_counter()
    complete: dict[tuple[str, str, str], set[int]] = {}
    todo, skipped = [], []
    for task, compute, args in jobs:
        key = (task.run, task.stage, task.source)
        if key not in complete:
            complete[key] = RunLayout(task.run).complete_parts(task.stage, task.source)
        (skipped if task.part in complete[key] else todo).append((task, compute, args))
    tail = shared() if todo and shared is not None else ()
    futures = {}
    for task, compute, args in todo:
        fut = client.submit(
            execute,
            task,
            compute,
            (*args, *tail),
            metadata,
            key=f"{stage}-{task.source}-{task.name}",
            resources=resources,
        )
        futures[fut] = task
    result.done = storage.read_jsons([task.marker for task, _, _ in skipped])
    result.skipped = len(skipped)
    columns = (
        TextColumn(f"[bold]{stage}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=not todo) as progress:
        bar = progress.add_task(stage, total=len(jobs), completed=result.skipped, rows=0)
        rows = sum(s["rows_in"] for s in result.done)
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                stats = fut.result()
                result.done.append(stats)
                rows += stats["rows_in"]
            except Exception as exc:  # a bug or a lost worker: keep going, report at the end
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                result.failed.append((task, detail))
            progress.update(bar, advance=1, rows=rows)
            fut.release()
    result.done.sort(key=lambda s: (s["source"], s["part"]))
    result.wall_seconds = time.perf_counter() - t0
    return result
