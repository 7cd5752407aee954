"""A build that cannot progress says so: the cluster's workers and the running partitions, watched.

- **No workers.** When no worker has been connected for Dask's `distributed.scheduler.no-workers-timeout`
  (pltd's default, `NO_WORKERS_TIMEOUT`, when it is unset: Dask would wait forever), the stage stops
  with `NoWorkersError`. A scheduler pltd starts itself (the local cluster) gets the same setting and
  fails its queued tasks with Dask's own `NoWorkerError` at that moment; the watch here covers
  schedulers started by someone else too. Before that, the workers of a local cluster whose nannies
  closed (a worker killed while it started is not restarted by its nanny) are started again, up to
  the profile's `worker_restarts`.
- **Stalled partitions.** Each task announces its start (`partition.STARTED_TOPIC`); a partition that
  has run `stall_factor` × the stage's median (and at least `stall_min_seconds`) is named on the
  console with the Python line its worker is at (`Client.call_stack`; a worker that does not answer
  is stuck in native code holding the GIL).
- **Time limits** per stage (`limits.partition_seconds`) are enforced by the runner (`runner.py`),
  which asks `stop_task` to restart the worker running the attempt: a thread cannot be interrupted,
  a process can.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import time
from dataclasses import dataclass

from pydantic import Field
from rich.console import Console

from pltd.validation import Strict

NO_WORKERS_TIMEOUT = "5 minutes"
CHECK_SECONDS = 1.0  # how often the runner asks the watch
MEDIAN_OF_AT_LEAST = 3  # finished partitions before a stage has a median to compare with


class Limits(Strict):
    """Manifest section `limits`: how long partitions may run. Part of no stage's settings hash: it
    changes results only for partitions that run past a limit, and those rows say so (`timeout`)."""

    # stage name → seconds one task of one partition may run; past it the task's worker is restarted and
    # the partition is tried whole once more, then bisected; an image that alone runs past it is rejected
    partition_seconds: dict[str, float] = Field(default_factory=dict)
    stall_factor: float = Field(5.0, gt=1)  # a partition running this many times its stage's median is named
    stall_min_seconds: float = Field(60.0, ge=0)  # … once it has run at least this long


class NoWorkersError(RuntimeError):
    """The cluster has had no worker for the no-workers timeout."""

    def __init__(self, since: dt.datetime, timeout: float):
        self.since, self.timeout = since, timeout
        super().__init__(
            f"the cluster has had no workers since {since:%Y-%m-%d %H:%M:%S} (no-workers timeout {timeout:g} s)"
        )


def no_workers_timeout() -> float:
    """Seconds without any worker before a build stops: Dask's setting, else pltd's default."""
    import dask
    from dask.utils import parse_timedelta

    return parse_timedelta(dask.config.get("distributed.scheduler.no-workers-timeout") or NO_WORKERS_TIMEOUT)


@dataclass(frozen=True)
class Started:
    at: float  # time.monotonic() on the driver when the start was heard
    worker: str


class Watch:
    """One per build: hears task starts, counts workers, restarts a local cluster's lost workers."""

    def __init__(self, client, console: Console, limits: Limits | None = None, restarts: int = 0):
        from pltd.pipeline.partition import STARTED_TOPIC

        self.client, self.console = client, console
        self.limits = limits or Limits()
        self.timeout = no_workers_timeout()
        self.restarts_left = restarts
        self.started: dict[str, Started] = {}  # task key → when and where it started computing
        self._none_since: tuple[float, dt.datetime] | None = None
        client.subscribe_topic(STARTED_TOPIC, self._heard)

    def _heard(self, event: tuple[float, dict]) -> None:  # runs on the client's event loop
        _, msg = event
        self.started[msg["key"]] = Started(time.monotonic(), msg["worker"])

    # --- workers
    def poll(self) -> dict[str, str]:
        """{task key: worker} of every task processing now. Raises NoWorkersError once no worker has
        been connected for the timeout; restarts a local cluster's lost workers before that."""
        now = time.monotonic()
        if self.restarts_left:
            self._reopen_lost()
        processing = self.client.processing()  # worker → keys, every connected worker included
        if processing:
            self._none_since = None
            return {key: worker for worker, keys in processing.items() for key in keys}
        if self._none_since is None:
            self._none_since = (now, dt.datetime.now())
        if now - self._none_since[0] > self.timeout:
            raise self.no_workers()
        return {}

    def no_workers(self) -> NoWorkersError:
        """The stop, dated from when this watch first saw no worker (or a timeout ago, if it did not yet)."""
        since = self._none_since[1] if self._none_since else dt.datetime.now() - dt.timedelta(seconds=self.timeout)
        return NoWorkersError(since, self.timeout)

    def _reopen_lost(self) -> None:
        """Start again the workers of this process's cluster whose nanny is gone: closed, or dropped by the
        cluster after `distributed.deploy.lost-worker-timeout` without its worker (a nanny keeps restarting
        a worker killed while running; it gives up on one killed while starting)."""
        from distributed.core import Status

        cluster = getattr(self.client, "cluster", None)
        if cluster is None or not hasattr(cluster, "worker_spec"):
            return
        alive = (Status.init, Status.starting, Status.running)
        lost = [n for n in cluster.worker_spec if n not in cluster.workers or cluster.workers[n].status not in alive]
        if not lost:
            return
        self.restarts_left -= 1
        failed = cluster.sync(_reopen, cluster, lost)
        self.console.print(
            f"[yellow]workers lost[/]: {len(lost)} local worker(s) started again"
            + (f", and lost again while starting ({failed})" if failed else "")
            + f"; {self.restarts_left} more restart(s) before the build stops without workers"
        )

    # --- running partitions
    def median(self, seconds: list[float]) -> float | None:
        return statistics.median(seconds) if len(seconds) >= MEDIAN_OF_AT_LEAST else None

    def stalled(self, ran: float, median: float | None) -> bool:
        return median is not None and ran >= max(self.limits.stall_factor * median, self.limits.stall_min_seconds)

    def where(self, key: str) -> str:
        """The innermost Python line the task's worker is at, or why that is not known."""
        try:
            stacks = self.client.sync(self.client.scheduler.call_stack, keys=[key], callback_timeout=5)
        except TimeoutError:
            return "its worker does not answer (native code holding the GIL?)"
        except Exception as exc:  # a worker gone meanwhile: the report is still worth printing
            return f"no call stack ({type(exc).__name__})"
        frames = [f for per_key in (stacks or {}).values() for f in per_key.get(key, [])]
        ours = [f for f in frames if "/distributed/" not in f] or frames  # not Dask's own hooks (gc callbacks)
        return f"at {' '.join(ours[-1].split())}" if ours else "no Python frame (native code)"

    def stop_task(self, worker: str) -> str:
        """Kill the process of `worker` through its nanny, which starts a new one (Dask's path for a dead
        worker), to stop a task that ran past its limit; says what happened."""
        try:
            self.client.run(_kill_worker_process, workers=[worker], nanny=True, on_error="raise")
        except Exception as exc:  # no nanny (`dask worker --no-nanny`), or gone meanwhile
            return f"worker {worker} could not be stopped ({type(exc).__name__}): the task's thread may still run there"
        return f"worker {worker} killed; its nanny starts a new one"


def _kill_worker_process(dask_worker) -> int:
    """On a nanny: SIGKILL its worker process (a hung thread cannot be stopped any other way)."""
    pid = dask_worker.pid
    os.kill(pid, signal.SIGKILL)
    return pid


async def _reopen(cluster, names: list[str]) -> str | None:
    """On the cluster's event loop: close and forget the nannies of `names`, then start the cluster's
    missing workers from their specs (what `SpecCluster.scale` does); why that failed, or None."""
    for name in names:
        nanny = cluster.workers.pop(name, None)
        if nanny is not None:
            await nanny.close()
    try:
        await cluster._correct_state()
    except Exception as exc:  # a worker killed again while starting: the next poll sees it lost again
        return f"{type(exc).__name__}: {exc}"
    return None
