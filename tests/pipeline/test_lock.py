"""One writer per run: the lock names its holder; stale locks (dead pid on this host) are taken over.

Consistency tests (pltd vs pltd) with real processes: the holder is a live `sleep` the test starts,
the dead holder a process that has exited.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from pltd.pipeline import lock, storage
from pltd.pipeline.cli import app
from pltd.pipeline.layout import RunLayout
from tests.helpers import folder_manifest


def holder_doc(pid: int, host: str | None = None) -> dict:
    started = psutil.Process(pid).create_time() if psutil.pid_exists(pid) else 0.0
    return {"host": host or socket.gethostname(), "pid": pid, "process_started": started, "since": "t", "command": "x"}


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_second_acquire_names_the_holder_and_release_frees(tmp_path):
    layout = RunLayout(str(tmp_path / "run"))
    me = lock.acquire(layout)
    with pytest.raises(lock.LockHeld, match=f"being built by pid {me['pid']} on {socket.gethostname()}"):
        lock.acquire(layout)
    lock.release(layout, me)
    assert not storage.exists(layout.lock)
    with lock.held(layout):
        assert storage.exists(layout.lock)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    layout = RunLayout(str(tmp_path))
    storage.write_json(layout.lock, holder_doc(dead.pid))
    said = []
    me = lock.acquire(layout, say=said.append)
    assert "taking over a stale lock" in said[0] and f"pid {dead.pid}" in said[0]
    assert json.loads(Path(layout.lock).read_text())["token"] == me["token"]


def test_reused_pid_is_not_the_holder(tmp_path, live_pid):
    doc = holder_doc(live_pid)
    doc["process_started"] -= 3600  # the holder started an hour before the process now owning the pid
    assert lock.holder_alive(doc) is False and lock.holder_alive(holder_doc(live_pid)) is True


def test_lock_of_another_host_is_refused_with_the_file_to_delete(tmp_path):
    layout = RunLayout(str(tmp_path))
    storage.write_json(layout.lock, holder_doc(1, host="node-17"))
    with pytest.raises(lock.LockHeld, match=f"on node-17 .*delete {layout.lock}"):
        lock.acquire(layout)


def test_pltd_build_into_a_held_run_exits_2_naming_the_holder(tmp_path, live_pid):
    m = folder_manifest(tmp_path, 4, 2)
    run = tmp_path / "run"
    storage.write_json(RunLayout(str(run)).lock, holder_doc(live_pid))
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(run)])
    assert res.exit_code == 2, res.output
    assert f"being built by pid {live_pid} on {socket.gethostname()}" in res.output
    assert not (run / "manifest.resolved.yaml").exists() and not (run / "plan").exists()  # nothing written
