"""Fault drills: real `pltd build` processes on real clusters (a LocalCluster, or a `dask scheduler` and
`dask worker`s this test starts), all on 127.0.0.1 and bounded in time. A hanging partition, every
worker killed (then a partition damaged before the resume), and workers killed under a build each end
in the documented stop and in the rows of an undisturbed build, byte for byte. The poison image and
the full disk are `test_faults.py`'s.

Consistency tests (pltd vs pltd): one tiny manifest (23 files in 12 partitions of 2 rows), built once
undisturbed by the module's fixture; every drill builds the same manifest (same root, so the same rows).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from pltd.schemas import image_id
from tests.helpers import folder_manifest

PLTD = [sys.executable, "-m", "pltd.pipeline.cli"]
DASK = str(Path(sys.executable).with_name("dask"))
HANG = "id3/0008.jpg"  # the image the drills make hang (isolate.py's test hook)


def pltd(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*PLTD, *args], capture_output=True, text=True, env=env or os.environ.copy(), timeout=timeout)


def files(run: Path) -> dict[str, bytes]:
    """Every part file of ingest/ and rejected/, by path inside the run: what the drills compare."""
    found = [p for sub in ("ingest", "rejected") for p in (run / sub).rglob("part-*.parquet")]
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(found)}


def said(proc) -> str:
    """stdout with the console's line wrapping undone."""
    return " ".join(proc.stdout.split())


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, Path]:
    """The manifest and its undisturbed build (`--until ingest`)."""
    tmp = tmp_path_factory.mktemp("drills")
    manifest = folder_manifest(tmp, 20, 2)
    done = pltd("build", str(manifest), "--out", str(tmp / "clean"), "--until", "ingest")
    assert done.returncode == 0, done.stderr
    return manifest, tmp / "clean"


def part_of(run: Path, item: str) -> int:
    return next(r["part"] for r in pq.read_table(run / "plan" / "faces.parquet").to_pylist() if r["item"] == item)


@pytest.mark.slow
def test_a_hanging_partition_is_named_retried_then_isolated_as_timeout(clean, tmp_path):
    manifest, reference = clean
    limited = tmp_path / "limited.yaml"
    limited.write_text(
        manifest.read_text() + "limits: {partition_seconds: {ingest: 3}, stall_factor: 2, stall_min_seconds: 1}\n"
    )
    run = tmp_path / "run"
    env = {**os.environ, "PLTD_TEST_HANG_ON": f"ingest:{HANG}"}  # sleeps an hour reading that plan row
    done = pltd("build", str(limited), "--out", str(run), "--until", "ingest", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    label = f"ingest/faces/part-{part_of(run, HANG):05d}"
    out = said(done)
    assert f"stalled {label} has run" in out  # named while it runs, with the line it is at
    assert "in restrict time.sleep(3600)" in out
    # the whole partition, the whole partition again, then the half (one row) holding the image
    assert out.count(f"time limit {label}") == 3, out
    assert f"isolated {label}: image(s) {HANG} ran past the time limit of 3 s (rejected: timeout)" in out
    [iso] = json.loads((run / "stats" / "ingest.json").read_text())["isolated"]
    assert iso["reasons"] == {HANG: "timeout"} and iso["reruns"] == 2
    rec = json.loads((run / "reconciliation.json").read_text())["sources"]["faces"]
    assert (rec["images_in"], rec["accepted"], rec["rejected"]) == (23, 19, 4)
    assert rec["balanced"] and rec["rejected_by_reason"]["ingest:timeout"] == 1
    isolated = f"{label.split('/', 1)[1]}.parquet"  # faces/part-NNNNN.parquet
    rejected = pq.read_table(run / "rejected" / "ingest" / isolated).to_pylist()
    assert [(r["image_id"], r["reason"]) for r in rejected if r["reason"] == "timeout"] == [(HANG, "timeout")]
    accepted = pq.read_table(run / "ingest" / isolated).column("image_id").to_pylist()
    assert accepted == [
        i
        for i in pq.read_table(reference / "ingest" / isolated).column("image_id").to_pylist()
        if i != image_id("faces", HANG)
    ]
    # every other partition is byte for byte the undisturbed build's
    mine, theirs = files(run), files(reference)
    differ = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))
    assert differ == [f"ingest/{isolated}", f"rejected/ingest/{isolated}"], differ


def worker_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The processes that run tasks under `parent`: a LocalCluster's or a `dask worker` nanny's children."""
    out = []
    for p in parent.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(p)
    return out


@pytest.mark.slow
def test_every_worker_killed_stops_the_build_then_the_resume_completes(clean, tmp_path):
    manifest, reference = clean
    run = tmp_path / "run"
    timeout = 5
    env = {
        **os.environ,
        "PLTD_TEST_HANG_ON": f"ingest:{HANG}",  # one partition never finishes: the build is still running
        "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": f"{timeout}s",
        "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "1s",  # a nanny whose worker is gone is dropped soon
        "PLTD_WORKER_RESTARTS": "1",
    }
    args = [*PLTD, "build", str(manifest), "--out", str(run), "--until", "ingest"]
    build = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_kill, kills, deadline = None, 0, time.monotonic() + 180
    try:
        while build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            if first_kill is None and not list((run / "ingest" / "faces" / "_done").glob("*.json")):
                continue  # kill once the build is under way
            first_kill = first_kill or time.monotonic()
            for p in worker_processes(psutil.Process(build.pid)):
                p.send_signal(signal.SIGKILL)
                kills += 1
        stopped_after = time.monotonic() - first_kill
        out, err = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.kill()
    print(f"no workers: {kills} worker processes killed; rc {build.returncode} {stopped_after:.1f} s after the first")
    assert build.returncode == 1, out + err
    assert stopped_after < timeout + 40  # the timeout, one restart of both workers (killed again), closing
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: the cluster has had no workers since ") and err.strip().endswith(line)
    assert "pltd/pipeline" not in err and "/pipeline/" not in err  # no traceback through pltd (Dask logs its nannies')
    kept = len(list((run / "ingest" / "faces" / "_done").glob("*.json")))
    resume = f"pltd build {manifest} --out {run} --until ingest"
    assert f"(no-workers timeout {timeout} s); {kept} complete partition(s) are kept in {run}" in line
    assert line.endswith(f"once workers are back, resume with: {resume}")
    # before the stop, workers were started again: by their nannies (a worker killed while running), or by
    # the build once a nanny gave up (a worker killed while starting; timing decides which: test_runner.py
    # closes a nanny to test the latter)
    restarted = err.count("Restarting worker") + " ".join(out.split()).count("workers lost:")
    print(f"no workers: {restarted} restarts before the stop")
    assert restarted
    # a partition damaged while the build was down (a truncated file) is recomputed by the resume
    damaged = sorted((run / "ingest" / "faces" / "_done").glob("*.json"))[0].stem
    part = run / "ingest" / "faces" / f"{damaged}.parquet"
    part.write_bytes(part.read_bytes()[:-100])
    again = pltd(*resume.split()[1:])  # the command printed, as printed
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"damaged ingest/faces/{damaged}:" in said(again) and f"({kept - 1} already complete)" in said(again)
    assert files(run) == files(reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_workers_killed_and_the_pool_shrinking_under_a_build_change_nothing(clean, tmp_path):
    """Two workers under nannies, killed again and again (their nannies start new ones), and one
    without a nanny, killed for good; every task sleeps 0.5 s so that the kills land mid-task."""
    manifest, reference = clean
    address = f"tcp://127.0.0.1:{free_port()}"
    sched = [DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"]
    sched += ["--dashboard-address", "127.0.0.1:0"]
    worker = [DASK, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
    worker += ["--local-directory", str(tmp_path / "dask")]
    env = {**os.environ, "PLTD_TEST_READ_SECONDS": "0.5"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen(sched, **quiet)]
    procs += [
        subprocess.Popen([*worker, "--nworkers", "2"], **quiet),
        subprocess.Popen([*worker, "--no-nanny"], **quiet),
    ]
    run = tmp_path / "run"
    args = [*PLTD, "build", str(manifest), "--out", str(run), "--until", "ingest", "--cluster", address]
    kills, shrunk = 0, False
    try:
        build = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        next_kill, deadline = 0.0, time.monotonic() + 180
        while build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            if time.monotonic() < next_kill or not list((run / "ingest" / "faces" / "_done").glob("*.json")):
                continue
            if not shrunk:
                procs[2].send_signal(signal.SIGKILL)  # the worker without a nanny: gone for good
                shrunk = True
            elif kills < 3 and (victims := worker_processes(psutil.Process(procs[1].pid))):
                victims[kills % len(victims)].send_signal(signal.SIGKILL)  # its nanny starts another
                kills += 1
            next_kill = time.monotonic() + 0.8
        out, err = build.communicate(timeout=60)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    print(f"worker loss: pool shrunk from 3 to 2 workers, then {kills} kills under nannies; rc {build.returncode}")
    assert build.returncode == 0, out + err
    assert shrunk and kills >= 2
    assert files(run) == files(reference)
