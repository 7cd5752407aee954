"""The stage runner on a real LocalCluster (2 worker processes): markers, resume, failures, model cache."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from rich.console import Console

from pltd import worker_cache
from pltd.pipeline import storage
from pltd.pipeline.partition import Job, PartitionTask, execute
from pltd.pipeline.runner import run_stage
from pltd.schemas import REJECTED


def numbers(part: int, n: int, fail_on: int | None = None):
    """A toy compute: n rows, every 3rd rejected; records which process built the 'model'."""
    if part == fail_on:
        raise ValueError(f"planted failure in partition {part}")
    model = worker_cache.cached("toy-model", lambda: {"pid": os.getpid()})
    ids = [f"{part}-{i}" for i in range(n)]
    keep = [i for i in range(n) if i % 3]
    acc = pa.table(
        {
            "image_id": [ids[i] for i in keep],
            "pid": [model["pid"]] * len(keep),
            "builds": [worker_cache.builds["toy-model"]] * len(keep),
        }
    )
    rej = pa.Table.from_pylist(
        [
            {"image_id": ids[i], "source": "toy", "stage": "toy", "reason": "every_third"}
            for i in range(n)
            if i % 3 == 0
        ],
        schema=REJECTED,
    )
    return acc, rej, n


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


def jobs(run, n_parts, fail_on=None):
    return [Job(PartitionTask(str(run), "toy", "src", p), numbers, (p, 7, fail_on)) for p in range(n_parts)]


def test_partitions_written_with_markers_then_skipped(client, tmp_path):
    console = Console(quiet=True)
    first = run_stage(client, "toy", jobs(tmp_path, 6), {"stage": "toy"}, console)
    assert first.skipped == 0 and not first.failed
    summary = first.summary()
    assert (summary["rows_in"], summary["rows_out"], summary["rejected"]) == (42, 24, {"every_third": 18})
    task = PartitionTask(str(tmp_path), "toy", "src", 4)
    out = storage.read_table(task.output)
    assert out.column("image_id").to_pylist() == ["4-1", "4-2", "4-4", "4-5"]
    assert out.schema.metadata[b"pltd.stage"] == b"toy" and out.schema.metadata[b"pltd.schema_version"] == b"2"
    assert storage.read_table(task.rejected).column("image_id").to_pylist() == ["4-0", "4-3", "4-6"]
    # each worker process built the model once, whatever number of partitions it ran
    rows = pa.concat_tables(storage.read_table(PartitionTask(str(tmp_path), "toy", "src", p).output) for p in range(6))
    assert set(rows.column("builds").to_pylist()) == {1}
    assert 1 <= len(set(rows.column("pid").to_pylist())) <= 2
    marker_times = [os.path.getmtime(PartitionTask(str(tmp_path), "toy", "src", p).marker) for p in range(6)]
    again = run_stage(client, "toy", jobs(tmp_path, 6), {"stage": "toy"}, console)
    assert again.skipped == 6 and again.summary()["rows_in"] == 42
    assert marker_times == [os.path.getmtime(PartitionTask(str(tmp_path), "toy", "src", p).marker) for p in range(6)]


def test_a_failing_partition_is_reported_and_the_rest_complete(client, tmp_path):
    result = run_stage(client, "toy", jobs(tmp_path, 4, fail_on=2), {}, Console(quiet=True))
    assert [t.part for t, _ in result.failed] == [2]
    assert "planted failure in partition 2" in result.failed[0][1]
    assert sorted(s["part"] for s in result.done) == [0, 1, 3]
    assert not storage.exists(PartitionTask(str(tmp_path), "toy", "src", 2).marker)


def test_execute_refuses_a_compute_that_loses_rows(tmp_path):
    def lossy():
        acc, rej, n = numbers(0, 6)
        return acc.slice(1), rej, n

    with pytest.raises(RuntimeError, match="6 rows in but 3 accepted \\+ 2 rejected"):
        execute(PartitionTask(str(tmp_path), "toy", "src", 0), lossy, (), {})
    assert not storage.exists(PartitionTask(str(tmp_path), "toy", "src", 0).marker)


def test_a_local_worker_whose_nanny_gave_up_is_started_again_up_to_the_limit():
    """A nanny closes when its worker dies while starting; the build's watch starts that worker again
    from the cluster's spec, `restarts` times, then leaves the pool as it is (the no-workers stop follows)."""
    from distributed import Client, LocalCluster

    from pltd.pipeline.watch import Watch

    with (
        LocalCluster(2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as c,
    ):
        watch = Watch(c, Console(quiet=True), restarts=1)
        for round_ in range(2):
            first = next(iter(cluster.workers))
            cluster.sync(cluster.workers[first].close)  # the nanny gives up; its worker leaves
            c.sync(_wait_for_workers, c, 1)
            watch.poll()
            assert watch.restarts_left == 0
            if round_ == 0:
                c.wait_for_workers(2, timeout=60)  # started again from the spec
        assert len(c.scheduler_info()["workers"]) == 1  # no restart left: the pool stays shrunk


async def _wait_for_workers(client, n: int) -> None:
    import asyncio

    while len((await client.scheduler.identity())["workers"]) != n:
        await asyncio.sleep(0.05)
