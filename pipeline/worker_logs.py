"""Quiet by default: native logging goes to files, Dask's shutdown chatter is not shown.

MediaPipe 0.10.21, TFLite and absl log from C++ straight to file descriptor 2 ("INFO: Created
TensorFlow Lite XNNPACK delegate", "W0000 … inference_feedback_manager.cc …": 20–35 lines per
worker). No environment variable turns that off — `GLOG_minloglevel` and `TF_CPP_MIN_LOG_LEVEL`
were tried and change nothing, since absl's C++ logging reads no flags before `InitializeLog` —
so pltd points descriptor 2 of the local worker processes (a `WorkerPlugin`, applied to every worker
as it joins) and of the driver while it runs MediaPipe itself (`stderr_to`) at a log file.
Python's own `sys.stderr` writes to descriptor 2 too, so worker tracebacks land in the same file.
`pltd -v` leaves everything on the terminal.

Closing a `LocalCluster` makes distributed log warnings that are no failure ("Worker process still
alive after 4.0 seconds, killing", cancelled heartbeats); `quiet_close` silences its loggers only
while the client and the cluster close, so a warning during the build (a worker over its memory
limit) is still shown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator

from distributed.diagnostics.plugin import WorkerPlugin

QUIET_LOGGERS = ("distributed", "tornado", "asyncio")


def _point_fd2_at(path: str) -> int:
    """Make descriptor 2 write (append) to `path`; returns a copy of the previous descriptor 2."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


@contextlib.contextmanager
def stderr_to(path: str | None) -> Iterator[None]:
    """In this process, descriptor 2 goes to `path` for the block (None: unchanged)."""
    if path is None:
        yield
        return
    saved = _point_fd2_at(path)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class StderrToFile(WorkerPlugin):
    """Each worker process appends its descriptor 2 to FOLDER/worker-<pid>.log."""

    name = "pltd-worker-logs"

    def __init__(self, folder: str):
        self.folder = folder

    def setup(self, worker) -> None:
        _point_fd2_at(os.path.join(self.folder, f"worker-{os.getpid()}.log"))


def send_stderr_to(client, folder: str) -> None:
    client.register_plugin(StderrToFile(folder))


@contextlib.contextmanager
def quiet_close() -> Iterator[Callable[[], None]]:
    """Yields `silence()`: call it when closing begins; the loggers' levels come back on exit."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".", 1)[0] in QUIET_LOGGERS]
    loggers = [logging.getLogger(n) for n in {*QUIET_LOGGERS, *names}]  # children may have levels of their own
    levels = [lg.level for lg in loggers]

    def silence() -> None:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)

    try:
        yield silence
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
