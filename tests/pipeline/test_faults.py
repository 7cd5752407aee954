"""Real faults in a real `pltd build` (subprocess, LocalCluster on loopback): a poison image that aborts
its worker process, and a full disk (a real 1-MiB tmpfs in a user+mount namespace).

Consistency tests (pltd vs pltd): the faulted build's rows are compared with a clean build's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pltd.schemas import image_id
from tests.helpers import folder_manifest

PLTD = [sys.executable, "-m", "pltd.pipeline.cli"]


def pltd(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*PLTD, *args], capture_output=True, text=True, env=env or os.environ.copy(), timeout=timeout)


def rows(folder: Path) -> pa.Table:
    files = sorted(p for p in folder.rglob("part-*.parquet") if "_done" not in p.parts)
    return pa.concat_tables([pq.read_table(p) for p in files]).sort_by("image_id")


@pytest.mark.slow
def test_poison_image_is_bisected_out_as_worker_crash(tmp_path):
    m = folder_manifest(tmp_path, 20, 8)  # 23 files in 3 partitions of 8, 8, 7
    clean, poisoned = tmp_path / "clean", tmp_path / "poisoned"
    assert pltd("build", str(m), "--out", str(clean), "--until", "ingest").returncode == 0
    item = "id3/0008.jpg"
    poison = image_id("faces", item)
    plan = pq.read_table(clean / "plan" / "faces.parquet").to_pylist()
    part = next(r["part"] for r in plan if r["item"] == item)
    n_part = sum(r["part"] == part for r in plan)
    env = {
        **os.environ,
        "PLTD_TEST_ABORT_ON": f"ingest:{item}",  # isolate.py: os.abort() in the worker reading that plan row
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",  # KilledWorker on the first death
    }
    done = pltd("build", str(m), "--out", str(poisoned), "--until", "ingest", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"isolated ingest/faces/part-{part:05d}: image(s) {item} crashed the worker" in done.stdout
    stats = json.loads((poisoned / "stats" / "ingest.json").read_text())
    [iso] = stats["isolated"]
    assert iso["partition"] == f"faces/part-{part:05d}" and iso["images"] == [item]
    assert 2 <= iso["reruns"] <= 2 * n_part  # halves down to one image: at most 2 tasks per level
    print(
        f"poison: partition {iso['partition']} ({n_part} rows), image {poison} ({item}), {iso['reruns']} bisection tasks"
    )
    rejected = rows(poisoned / "rejected")
    crash = rejected.filter(pa.compute.equal(rejected.column("reason"), "worker_crash")).to_pylist()
    assert [(r["image_id"], r["stage"]) for r in crash] == [(item, "ingest")]
    # everything else is what the clean build made, and the counts reconcile
    a, b = rows(clean / "ingest"), rows(poisoned / "ingest")
    assert b.equals(a.filter(pa.compute.not_equal(a.column("image_id"), poison)))
    others = rejected.filter(pa.compute.not_equal(rejected.column("reason"), "worker_crash"))
    assert rows(clean / "rejected").equals(others)
    rec = json.loads((poisoned / "reconciliation.json").read_text())["sources"]["faces"]
    assert (rec["images_in"], rec["accepted"], rec["rejected"]) == (23, 19, 4)
    assert rec["balanced"] and rec["rejected_by_reason"]["ingest:worker_crash"] == 1


def user_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
    return probe.returncode == 0


FULL_DISK = """
set -u
mount -t tmpfs -o size={size} tmpfs "$RUNDIR"
{pltd} build "$MANIFEST" --out "$RUNDIR/run" --until ingest > "$LOG/full.out" 2> "$LOG/full.err"
echo $? > "$LOG/full.rc"
cp -r "$RUNDIR/run" "$LOG/at_failure"
mount -o remount,size=64m "$RUNDIR"
{pltd} build "$MANIFEST" --out "$RUNDIR/run" --until ingest > "$LOG/rerun.out" 2> "$LOG/rerun.err"
echo $? > "$LOG/rerun.rc"
cp -r "$RUNDIR/run" "$LOG/after"
"""


@pytest.mark.slow
@pytest.mark.skipif(not user_namespaces(), reason="needs unprivileged user+mount namespaces (unshare -r -m)")
def test_full_disk_stops_with_one_line_and_a_rerun_resumes(tmp_path):
    m = folder_manifest(tmp_path, 240, 8)  # ~190 kB of ingest rows in 31 partitions
    clean = tmp_path / "clean"
    assert pltd("build", str(m), "--out", str(clean), "--until", "ingest").returncode == 0
    size = sum(p.stat().st_size for p in (clean / "ingest").rglob("*")) // 2
    rundir, log = tmp_path / "tmpfs", tmp_path / "log"
    rundir.mkdir(), log.mkdir()
    script = FULL_DISK.format(size=f"{max(size // 1024, 64)}k", pltd=" ".join(PLTD))
    env = {**os.environ, "RUNDIR": str(rundir), "LOG": str(log), "MANIFEST": str(m)}
    subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], env=env, timeout=900, check=True)
    err = (log / "full.err").read_text()
    assert (log / "full.rc").read_text().strip() == "1", err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    # the disk fills while writing a partition's rows or its rejected rows, whichever comes first
    written = line.removeprefix(f"error: no space left on device writing {rundir}/run/").split(";")[0]
    assert written.startswith(("ingest/faces/", "rejected/ingest/faces/")) and "Traceback" not in err, line
    failed = log / "at_failure"
    assert not [p for p in failed.rglob("*") if ".tmp-" in p.name]  # no temporaries left behind
    markers = {p.stem for p in (failed / "ingest" / "faces" / "_done").glob("*.json")}
    assert 0 < len(markers) < 31  # stopped mid-stage
    for p in (failed / "ingest" / "faces").glob("part-*.parquet"):  # what has no marker is not trusted
        if p.stem in markers:
            marker = json.loads((failed / "ingest" / "faces" / "_done" / f"{p.stem}.json").read_text())
            assert marker["files"]["output"]["bytes"] == p.stat().st_size
    assert not (failed / "reconciliation.json").exists()
    assert (log / "rerun.rc").read_text().strip() == "0", (log / "rerun.err").read_text()
    assert f"({len(markers)} already complete)" in (log / "rerun.out").read_text()
    for sub in ("ingest", "rejected"):
        assert rows(clean / sub).equals(rows(log / "after" / sub)), f"{sub} differs after the rerun"
