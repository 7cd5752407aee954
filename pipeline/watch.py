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
import statistics
import time
from dataclasses import dataclass

from pydantic import Field
from rich.console import Console

from pltd.validation import Strict

NO_WORKERS_TIMEOUT = "5 minutes"
CHECK_SECONDS = 1.0  # how often the runner asks the watch
REOPEN_AFTER_SECONDS = 10.0  # a local worker missing this long, its nanny not restarting it, is started again
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
        self._missing: dict[str, float] = {}  # local worker name → since when it has not been connected
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
            self._reopen_lost(now)
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

    def _reopen_lost(self, now: float) -> None:
        """Start again the workers of this process's cluster that have been gone, nanny and all."""
        cluster = getattr(self.client, "cluster", None)
        if cluster is None or not hasattr(cluster, "worker_spec"):
            return
        connected = {w["name"] for w in cluster.scheduler_info.get("workers", {}).values()}
        for name in [n for n in self._missing if n in connected]:
            del self._missing[name]
        for name in cluster.worker_spec:
            if name not in connected:
                self._missing.setdefault(name, now)
        lost = [n for n, since in self._missing.items() if now - since > REOPEN_AFTER_SECONDS]
        if not lost:
            return
        self.restarts_left -= 1
        self.console.print(
            f"[yellow]workers lost[/]: starting {len(lost)} local worker(s) again "
            f"({self.restarts_left} restart(s) left before the build stops without workers)"
        )
        cluster.sync(_close_nannies, cluster, lost)
        cluster.scale(len(cluster.worker_spec))  # opens every spec without a nanny
        for name in lost:
            self._missing[name] = now

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
        return f"at {frames[-1].strip()}" if frames else "no Python frame (native code)"

    def stop_task(self, worker: str) -> str:
        """Restart `worker` (through its nanny) to stop a task that ran past its limit; what happened."""
        try:
            status = self.client.restart_workers([worker], timeout=60, raise_for_error=False).get(worker)
        except Exception as exc:
            status = f"{type(exc).__name__}: {exc}"
        if status in ("OK", "removed"):
            return f"worker {worker} restarted"
        return f"worker {worker} could not be restarted ({status}): the task's thread may still run there"


async def _close_nannies(cluster, names: list[str]) -> None:
    """On the cluster's event loop: forget the nannies of `names` so that `scale` opens them anew."""
    for name in names:
        nanny = cluster.workers.pop(name, None)
        if nanny is not None:
            await nanny.close()
