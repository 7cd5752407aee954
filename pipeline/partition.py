"""One partition of one stage: what a task is, and what a task does on a worker.

Each task computes one partition, writes its output and its rejected rows through temporary names,
and writes its completion marker (which carries the partition's stats) last. A rerun skips every
partition whose marker exists, so a crashed build resumes where it stopped. The driver side (which
tasks to submit, what to do when one dies) is `runner.py`.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from pltd.pipeline import isolate, storage
from pltd.pipeline.layout import RunLayout, part_name

# compute(*args) -> (accepted table, rejected table, rows in)
Compute = Callable[..., tuple[pa.Table, pa.Table, int]]

# Each task announces when it starts computing (`Worker.log_event`): the driver times running
# partitions from that moment, not from submission, to name stalled ones and enforce time limits.
STARTED_TOPIC = "pltd-partition-started"


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
    def label(self) -> str:
        """How the console names it: stage/source/part-NNNNN."""
        return f"{self.stage}/{self.source}/{self.name}"

    @property
    def output(self) -> str:
        return RunLayout(self.run).output(self.stage, self.source, self.part)

    @property
    def rejected(self) -> str:
        return RunLayout(self.run).rejected(self.stage, self.source, self.part)

    @property
    def marker(self) -> str:
        return RunLayout(self.run).marker(self.stage, self.source, self.part)


@dataclass(frozen=True)
class Job:
    """A partition to compute: its task, the stage's compute, and the compute's own arguments (the
    values every task shares, `Stage.shared`, are appended when it is submitted)."""

    task: PartitionTask
    compute: Compute
    args: tuple


def _announce_start() -> None:
    """Tell the driver (through the scheduler's event log) that this task now computes, and where."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # called outside a worker (a test, a benchmark's plain loop): nobody to tell
        return
    worker.log_event(STARTED_TOPIC, {"key": str(worker.get_current_task()), "worker": worker.address})


def execute(task: PartitionTask, compute: Compute, args: tuple, metadata: dict[str, str]) -> dict:
    """Run on a worker: compute one partition, write output, rejected rows, then the marker."""
    _announce_start()
    t0 = time.perf_counter()
    with isolate.scope(task.stage, None):
        accepted, rejected, rows_in = compute(*args)
    return write_partition(task, accepted, rejected, rows_in, metadata, t0)


def compute_piece(task: PartitionTask, compute: Compute, args: tuple, ids: tuple[str, ...]) -> tuple:
    """Run on a worker: the partition's stage on the rows `ids` only (a piece of a bisection); nothing written."""
    _announce_start()
    with isolate.scope(task.stage, frozenset(ids)):
        return compute(*args)


def write_isolated(task: PartitionTask, pieces: list[tuple], lost: list[isolate.Lost], metadata: dict) -> dict:
    """Run on a worker: a bisected partition's pieces (in row order) and the images that, alone, still
    killed their worker or ran past the time limit, written as one partition."""
    t0 = time.perf_counter()
    accepted = pa.concat_tables([a for a, _, _ in pieces], promote_options="default")
    rejected = pa.concat_tables(
        [*(r for _, r, _ in pieces), isolate.lost_rows(lost, task.source, task.stage)], promote_options="default"
    )
    rows_in = sum(n for _, _, n in pieces) + len(lost)
    return write_partition(task, accepted, rejected, rows_in, metadata, t0, isolated=[x.image_id for x in lost])


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
            f"{task.label}: {rows_in} rows in but {accepted.num_rows} accepted + {rejected.num_rows} rejected"
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
