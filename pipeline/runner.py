"""The stage runner (driver side): every incomplete partition of a stage through Dask, followed to the end.

- **Resume.** Completion comes from one listing of each source's marker folder; the markers of
  complete partitions are read in one batched call (after the first tasks are submitted) and their
  files' sizes checked against one listing of each output folder: a partition damaged since its
  marker was written is recomputed.
- **Isolation.** A task that kills its worker (`KilledWorker`, after Dask's own retries) or runs past
  the stage's time limit is tried whole once more (`whole_rounds`), then its partition is bisected
  (`isolate.py`) on `keys(task)`, the keys of the rows its compute reads, until each loss is one
  image: that image is rejected (`worker_crash`, `timeout`) and the partition written from its pieces.
- **Reconciliation.** Every partition written has rows in = accepted + rejected (`partition.py`
  refuses anything else), so a stage's counts add up whatever was isolated.
- **Stops.** A full disk stops the stage (`StageResult.disk_full`); so does a cluster without
  workers (`watch.NoWorkersError`). Any other failure is reported per partition, not fatal.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pltd.pipeline import isolate, storage
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.partition import Job, PartitionTask, compute_piece, execute, write_isolated
from pltd.pipeline.watch import CHECK_SECONDS, NoWorkersError, Watch


@dataclass
class StageResult:
    stage: str
    done: list[dict] = field(default_factory=list)  # stats of every complete partition
    skipped: int = 0  # partitions complete before this run
    failed: list[tuple[PartitionTask, str]] = field(default_factory=list)
    recomputed: list[tuple[PartitionTask, str]] = field(default_factory=list)  # damaged since their marker
    isolated: list[dict] = field(default_factory=list)  # partitions bisected around images that crash or hang
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


# --- what a submitted task is doing for its partition
@dataclass(frozen=True)
class Whole:
    """The whole partition, computed and written; `round` counts its tries after a loss."""

    job: Job
    round: int = 1

    @property
    def key(self) -> str:
        t = self.job.task
        return f"{t.stage}-{t.source}-{t.name}" + (f"-r{self.round}" if self.round > 1 else "")


@dataclass(frozen=True)
class Piece:
    """Rows `ids` of a bisected partition, from row `first` on: computed, not written."""

    job: Job
    first: int
    ids: tuple[str, ...]

    @property
    def key(self) -> str:
        t = self.job.task
        return f"{t.stage}-{t.source}-{t.name}-rows{self.first}-{self.first + len(self.ids)}"


@dataclass(frozen=True)
class Write:
    """A bisected partition's pieces and lost images written as the partition (try `n`)."""

    job: Job
    n: int

    @property
    def key(self) -> str:
        t = self.job.task
        return f"{t.stage}-{t.source}-{t.name}-isolated-{self.n}"


Attempt = Whole | Piece | Write


@dataclass
class _Bisection:
    """A partition whose task kept dying (worker killed, time limit), split until each loss is one image."""

    ids: tuple[str, ...]
    pieces: dict[int, Any] = field(default_factory=dict)  # first row → finished future
    pending: int = 0
    lost: dict[int, isolate.Lost] = field(default_factory=dict)  # row → the image lost there
    reruns: int = 0
    writes: int = 0


LOST_DETAIL = {
    isolate.WORKER_CRASH: "the worker process died running this image alone",
    isolate.TIMEOUT: "ran past the stage's time limit of {limit:g} s alone",
}


class StageRun:
    """One stage's partitions through the cluster: submit, follow, retry, bisect, report."""

    def __init__(
        self,
        client,
        stage: str,
        metadata: dict[str, str],
        console: Console,
        *,
        resources: dict[str, float] | None = None,
        shared: Callable[[], tuple] | None = None,
        keys: Callable[[PartitionTask], list[str]] | None = None,
        whole_rounds: int = 2,
        time_limit: float | None = None,
        watch: Watch | None = None,
    ):
        from distributed import as_completed

        self.client, self.stage, self.metadata, self.console = client, stage, metadata, console
        self.resources, self.keys, self.whole_rounds, self.time_limit = resources, keys, whole_rounds, time_limit
        self._shared_fn, self._shared = shared, None  # `shared()` is called when the first task is submitted
        self.watch = watch or Watch(client, console)
        self.result = StageResult(stage)
        self._attempts: dict[Any, Attempt] = {}  # future → what it does
        self._pending = as_completed()
        self._bisections: dict[PartitionTask, _Bisection] = {}
        self._reported: set[str] = set()  # keys already named as stalled
        self._rows = 0
        self._final = 0  # partitions complete or failed in this run
        self._next_check = 0.0

    # --- the whole stage
    def run(self, jobs: list[Job]) -> StageResult:
        t0 = time.perf_counter()
        todo, skipped = self._split(jobs)
        for job in todo:
            self._submit(Whole(job))
        self._resume(skipped)
        columns = (
            TextColumn(f"[bold]{self.stage}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._rows = sum(s["rows_in"] for s in self.result.done)
        with Progress(*columns, console=self.console, transient=False, disable=not self._attempts) as progress:
            bar = progress.add_task(self.stage, total=len(jobs), completed=self.result.skipped, rows=self._rows)
            try:
                for _ in self._settled():
                    progress.update(bar, completed=self.result.skipped + self._final, rows=self._rows)
            except NoWorkersError:
                self.client.cancel(list(self._attempts))
                raise
        self.result.done.sort(key=lambda s: (s["source"], s["part"]))
        self.result.wall_seconds = time.perf_counter() - t0
        return self.result

    def _split(self, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
        """(to do, complete before this run) from one marker listing per source."""
        complete: dict[tuple[str, str, str], set[int]] = {}
        todo, skipped = [], []
        for job in jobs:
            t = job.task
            key = (t.run, t.stage, t.source)
            if key not in complete:
                complete[key] = RunLayout(t.run).complete_parts(t.stage, t.source)
            (skipped if t.part in complete[key] else todo).append(job)
        return todo, skipped

    def _resume(self, skipped: list[Job]) -> None:
        """Trust complete partitions whose files still have their marker's sizes; recompute the others."""
        from pltd.pipeline.verify import size_problems

        markers = storage.read_jsons([job.task.marker for job in skipped])
        by_source: dict[tuple[str, str], list[dict]] = {}
        for m in markers:
            by_source.setdefault((m["stage"], m["source"]), []).append(m)
        bad: dict[tuple[str, int], str] = {}
        for (st, src), ms in by_source.items():
            problems = size_problems(RunLayout(skipped[0].task.run), st, src, ms)
            bad.update({(src, part): why for part, why in problems.items()})
        for job, m in zip(skipped, markers, strict=True):
            why = bad.get((job.task.source, job.task.part))
            if why is None:
                self.result.done.append(m)
                continue
            self.console.print(f"[yellow]damaged[/] {job.task.label}: {why}; recomputing")
            storage.remove(job.task.marker)
            self.result.recomputed.append((job.task, why))
            self._submit(Whole(job))
        self.result.skipped = len(skipped) - len(self.result.recomputed)

    def _settled(self) -> Iterator[None]:
        """Settles results as they come and watches the rest between them; yields after each round."""
        while not self._pending.is_empty():
            for fut in self._ready():
                attempt = self._attempts.pop(fut, None)
                self.watch.started.pop(fut.key, None)
                if attempt is None:  # stopped here: timed out, or its partition failed
                    continue
                if fut.status == "cancelled":  # not by this run: say so rather than wait for it
                    self._final += self._fail(attempt.job.task, f"task {fut.key} was cancelled outside this build")
                    continue
                self._final += self._settle(fut, attempt)
                if not (isinstance(attempt, Piece) and fut.status == "finished"):  # a piece's rows wait for the write
                    fut.release()
                if self.result.disk_full:
                    self.client.cancel(list(self._attempts))
                    return
            self._check()
            yield

    def _ready(self) -> list:
        """Futures done so far, waiting up to CHECK_SECONDS for one."""
        deadline = time.monotonic() + CHECK_SECONDS
        while not self._pending.has_ready() and not self._pending.is_empty() and time.monotonic() < deadline:
            with self._pending.thread_condition:
                self._pending.thread_condition.wait(timeout=0.1)
        return self._pending.next_batch(block=False)

    # --- submitting
    def _submit(self, attempt: Attempt) -> None:
        task, job = attempt.job.task, attempt.job
        if self._shared is None:
            self._shared = self._shared_fn() if self._shared_fn is not None else ()
        args = (*job.args, *self._shared)
        if isinstance(attempt, Whole):
            call = (execute, task, job.compute, args, self.metadata)
        elif isinstance(attempt, Piece):
            b = self._bisections[task]
            b.pending += 1
            b.reruns += 1
            call = (compute_piece, task, job.compute, args, attempt.ids)
        else:
            b = self._bisections[task]
            pieces = [b.pieces[k] for k in sorted(b.pieces)]
            call = (write_isolated, task, pieces, [b.lost[k] for k in sorted(b.lost)], self.metadata)
        fut = self.client.submit(*call, key=attempt.key, resources=self.resources, pure=False)
        self._attempts[fut] = attempt
        self._pending.add(fut)

    # --- results
    def _settle(self, fut, attempt: Attempt) -> bool:
        """Act on a finished or failed attempt; True when its partition is now complete or failed."""
        from distributed import KilledWorker
        from distributed.scheduler import NoWorkerError

        task = attempt.job.task
        if fut.status == "finished" and isinstance(attempt, Piece):
            b = self._bisections[task]
            b.pieces[attempt.first] = fut
            b.pending -= 1
            self._maybe_write(attempt.job)
            return False
        if fut.status == "finished":
            stats = fut.result()
            self.result.done.append(stats)
            self._rows += stats["rows_in"]
            if task in self._bisections:
                self._isolated(task, self._bisections.pop(task), stats)
            return True
        exc = fut.exception()
        if isinstance(exc, storage.NoSpaceError):
            self.result.disk_full = exc.filename
            return False
        if isinstance(exc, NoWorkerError):  # the scheduler's own no-workers timeout (a scheduler pltd started)
            raise self.watch.no_workers()
        if isinstance(exc, KilledWorker) and self._lost(attempt, isolate.WORKER_CRASH):
            return False
        if exc is None:  # no error of its own: its result went with a killed worker ("lost"/"cancelled")
            if self._lost(attempt, isolate.WORKER_CRASH):
                return False
            return self._fail(task, f"{attempt.key}: its result was lost with its worker ({fut.status})")
        return self._fail(task, "".join(traceback.format_exception_only(type(exc), exc)).strip())

    def _fail(self, task: PartitionTask, msg: str) -> bool:
        self.result.failed.append((task, msg))
        self._bisections.pop(task, None)
        siblings = [f for f, a in self._attempts.items() if a.job.task == task]
        for f in siblings:
            del self._attempts[f]
        self.client.cancel(siblings)
        return True

    def _lost(self, attempt: Attempt, reason: str) -> bool:
        """An attempt that killed its worker or ran past the time limit: try the partition whole once more,
        then bisect it, narrowing each loss to one image; False when the partition must fail instead."""
        job, task = attempt.job, attempt.job.task
        if isinstance(attempt, Whole) and attempt.round < self.whole_rounds:
            self._submit(Whole(job, attempt.round + 1))
            return True
        if isinstance(attempt, Whole):
            if self.keys is None:
                return False
            ids = tuple(self.keys(task))
            self._bisections[task] = _Bisection(ids)
            first, second = isolate.halves(ids)
            self._submit(Piece(job, 0, first))
            self._submit(Piece(job, len(first), second))
            return True
        b = self._bisections.get(task)
        if b is None:  # the partition already failed for another reason
            return True
        if isinstance(attempt, Piece):
            b.pending -= 1
            if len(attempt.ids) == 1:
                detail = LOST_DETAIL[reason].format(limit=self.time_limit or 0)
                b.lost[attempt.first] = isolate.Lost(attempt.ids[0], reason, detail)
            else:
                left, right = isolate.halves(attempt.ids)
                self._submit(Piece(job, attempt.first, left))
                self._submit(Piece(job, attempt.first + len(left), right))
        self._maybe_write(job)  # a lost Write is written again from the same pieces
        return True

    def _maybe_write(self, job: Job) -> None:
        """Once every piece of a bisection has finished or been narrowed to one image, write the partition."""
        b = self._bisections[job.task]
        if b.pending:
            return
        b.writes += 1
        self._submit(Write(job, b.writes))

    def _isolated(self, task: PartitionTask, b: _Bisection, stats: dict) -> None:
        lost = [b.lost[k] for k in sorted(b.lost)]
        self.result.isolated.append(
            {
                "partition": f"{task.source}/{task.name}",
                "images": stats["isolated"],
                "reasons": {x.image_id: x.reason for x in lost},
                "reruns": b.reruns,
            }
        )
        said = {
            isolate.WORKER_CRASH: "crashed the worker",
            isolate.TIMEOUT: f"ran past the time limit of {self.time_limit or 0:g} s",
        }
        parts = [
            f"image(s) {', '.join(x.image_id for x in lost if x.reason == r)} {said[r]} (rejected: {r})"
            for r in said
            if any(x.reason == r for x in lost)
        ]
        self.console.print(
            f"[yellow]isolated[/] {task.label}: {'; '.join(parts) or 'no image lost'}; {b.reruns} bisection task(s)"
        )

    # --- between results
    def _check(self) -> None:
        """Every CHECK_SECONDS: workers still there, stalled partitions named, time limits enforced."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_SECONDS
        running = self.watch.poll()
        median = self.watch.median([s["seconds"] for s in self.result.done if "isolated" not in s])
        for fut, attempt in list(self._attempts.items()):
            began = self.watch.started.get(fut.key)
            if began is None or running.get(fut.key) != began.worker or isinstance(attempt, Write):
                continue  # not started, or started on a worker that has left it since
            ran = now - began.at
            if self.time_limit is not None and ran > self.time_limit:
                self._time_out(fut, attempt, began.worker, ran)
            elif fut.key not in self._reported and self.watch.stalled(ran, median):
                self._reported.add(fut.key)
                self.console.print(
                    f"[yellow]stalled[/] {_what(attempt)} has run {ran:.0f} s on {began.worker}, "
                    f"{ran / median:.1f}× the stage's median of {median:.1f} s; {self.watch.where(fut.key)}"
                )

    def _time_out(self, fut, attempt: Attempt, worker: str, ran: float) -> None:
        del self._attempts[fut]
        self.client.cancel([fut])  # forgotten first, so that the restart below does not reschedule it
        stopped = self.watch.stop_task(worker)
        self.console.print(
            f"[yellow]time limit[/] {_what(attempt)} ran {ran:.0f} s, past {self.time_limit:g} s; {stopped}"
        )
        if not self._lost(attempt, isolate.TIMEOUT):
            self._final += self._fail(attempt.job.task, f"ran past the stage's time limit of {self.time_limit:g} s")


def _what(attempt: Attempt) -> str:
    if isinstance(attempt, Piece):
        return f"{attempt.job.task.label} (rows {attempt.first}–{attempt.first + len(attempt.ids) - 1})"
    return attempt.job.task.label


def run_stage(
    client, stage: str, jobs: list[Job], metadata: dict[str, str], console: Console, **options
) -> StageResult:
    """Every incomplete partition of `jobs` computed; failures are reported, not fatal (`StageRun`'s options)."""
    return StageRun(client, stage, metadata, console, **options).run(jobs)
