"""Isolating an image that crashes its worker or hangs: a task may compute part of a partition.

A native crash (a segfault in dlib, MediaPipe or OpenCV) kills the worker process; Dask retries the
task on another worker and, after `distributed.scheduler.allowed-failures` deaths, gives up with
`KilledWorker`. The runner then bisects the partition: each half runs as a task of its own whose
stage sees only that half's rows. `scope(stage, ids)` sets, for the task's thread, which rows the
stage may see (by image id; ingest's plan rows by item: `Stage.row_keys`); `restrict` (called by
`storage.read_table` and `plan.read_partition`, which every stage's compute reads its inputs
through) applies it. A half that still crashes is split again
until one image is left: that image becomes a rejected row with reason `worker_crash`. A partition
that runs past its stage's time limit (manifest `limits.partition_seconds`) is bisected the same way,
and an image that alone still runs past it is rejected with reason `timeout`.

Test-only hook: with `PLTD_TEST_ABORT_ON=<image_id>` (or `<stage>:<image_id>`) in a worker's
environment, a task of that stage whose input rows include that image calls `os.abort()` — a real
crash of the worker process, as a native fault would be. Ingest's input rows are plan rows, keyed by
item: there the hook names the item (`ingest:id3/0008.jpg`). `PLTD_TEST_HANG_ON` (same form) makes
such a task sleep for an hour instead: a hang, as a native call that never returns would be.
`PLTD_TEST_READ_SECONDS=S` makes every task sleep S seconds as it reads its rows: tasks long enough
for a drill to kill workers under them. Never set these outside tests.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

ABORT_ENV = "PLTD_TEST_ABORT_ON"
HANG_ENV = "PLTD_TEST_HANG_ON"
READ_SECONDS_ENV = "PLTD_TEST_READ_SECONDS"
KEYS = ("image_id", "item")  # what rows are keyed by: stage rows by image id, plan rows (ingest's input) by item
WORKER_CRASH = "worker_crash"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Lost:
    """An image a bisection narrowed a loss down to: it alone killed the worker, or ran past the limit."""

    image_id: str
    reason: str  # WORKER_CRASH or TIMEOUT
    detail: str


# (stage, image ids the task may see or None for the whole partition); None outside runner tasks
_scope: contextvars.ContextVar[tuple[str, frozenset[str] | None] | None] = contextvars.ContextVar(
    "pltd_isolate_scope", default=None
)


@contextlib.contextmanager
def scope(stage: str, ids: frozenset[str] | None) -> Iterator[None]:
    token = _scope.set((stage, ids))
    try:
        yield
    finally:
        _scope.reset(token)


def restrict(table: pa.Table) -> pa.Table:
    """`table` as the current task may see it (all of it outside a task on part of a partition)."""
    current = _scope.get()
    key = next((k for k in KEYS if k in table.column_names), None)
    if current is None or key is None:
        return table
    stage, ids = current
    if ids is not None:
        table = table.filter(pc.is_in(table.column(key), value_set=pa.array(sorted(ids), pa.string())))
    if _test_target(ABORT_ENV, stage, table.column(key)):
        os.abort()  # test-only: a real crash of the worker process (SIGABRT), see the module docstring
    if _test_target(HANG_ENV, stage, table.column(key)):
        time.sleep(3600)  # test-only: a hang, see the module docstring
    if os.environ.get(READ_SECONDS_ENV):
        time.sleep(float(os.environ[READ_SECONDS_ENV]))  # test-only: slow tasks, see the module docstring
    return table


def _test_target(env: str, stage: str, keys: pa.ChunkedArray) -> bool:
    target = os.environ.get(env)
    if not target:
        return False
    want_stage, _, image_id = target.rpartition(":")
    return (not want_stage or want_stage == stage) and image_id in set(keys.to_pylist())


def halves(ids: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    mid = len(ids) // 2
    return ids[:mid], ids[mid:]


def lost_rows(lost: list[Lost], source: str, stage: str) -> pa.Table:
    """Rejected rows (schema REJECTED) for images that crashed their worker, or hung, on their own."""
    from pltd.schemas import REJECTED

    rows = [{"image_id": x.image_id, "source": source, "stage": stage, "reason": x.reason, "detail": x.detail}
            for x in lost]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=REJECTED)
