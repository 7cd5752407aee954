"""One writer per run: `RUN/_lock.json` names the build that holds the run (host, pid, start time).

A second `pltd build` into the same RUN refuses (rc 2) and names the holder, so no partition ever
has two writers. A lock whose holder is dead — same host, and its pid gone or reused by a process
started after the lock (psutil, already a dependency of distributed) — is stale: it is taken over
with a message. A lock from another host cannot be checked from here; it is refused, and the
message says which file to delete once that build is known to be gone.

The lock is created with exclusive-create mode (`open(..., "xb")`: O_EXCL on a local disk,
If-None-Match on object stores whose fsspec driver supports it), so of two builds started at the
same moment exactly one gets it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Iterator

import psutil

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout


class LockHeld(RuntimeError):
    """Another live build holds the run."""


def _me(command: str) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_started": psutil.Process().create_time(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "token": uuid.uuid4().hex,
    }


def holder_alive(holder: dict) -> bool | None:
    """True/False for a holder on this host; None when it runs elsewhere (cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return None
    try:
        proc = psutil.Process(int(holder["pid"]))
        started = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, KeyError, ValueError):
        return False
    # a pid reused by a later process is not the holder (create times of the same process agree)
    return abs(started - float(holder.get("process_started", started))) < 1.0


def _create(url: str, doc: dict) -> bool:
    fs, path = storage.fs_path(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    try:
        with fs.open(path, "xb") as f:
            f.write(json.dumps(doc, indent=2).encode())
    except FileExistsError:
        return False
    return True


def describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} ({holder.get('command')})"


def acquire(layout: RunLayout, command: str = "pltd build", say=print) -> dict:
    """Take the run's lock or raise LockHeld naming the holder."""
    url = layout.lock
    me = _me(command)
    for _ in range(3):  # a stale lock removed under us by another taker: try again
        if _create(url, me):
            return me
        try:
            holder = storage.read_json(url)
        except FileNotFoundError:
            continue
        except json.JSONDecodeError:  # torn write by a holder killed mid-create: nothing to protect
            holder = {"host": socket.gethostname(), "pid": -1}
        alive = holder_alive(holder)
        if alive is False:
            say(f"taking over a stale lock on {layout.root}: its holder ({describe(holder)}) is gone")
            storage.remove(url)
            continue
        where = "" if alive else f"; if that build is gone, delete {url}"
        raise LockHeld(f"{layout.root} is being built by {describe(holder)}{where}")
    raise LockHeld(f"{layout.root}: could not take the lock {url} (another build keeps taking it)")


def release(layout: RunLayout, me: dict) -> None:
    """Remove the lock if it is still ours."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        if storage.read_json(layout.lock).get("token") == me["token"]:
            storage.remove(layout.lock)


@contextlib.contextmanager
def held(layout: RunLayout, command: str = "pltd build", say=print) -> Iterator[dict]:
    me = acquire(layout, command, say)
    try:
        yield me
    finally:
        release(layout, me)
