"""The user's side of a training run: progress on stderr, Ctrl-C / SIGTERM as a request to stop at a
checkpoint, and checkpoint writes in the background so that DDP ranks do not wait for rank 0's disk.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import torch


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """One line on stderr at step 1, then every `every_s` seconds and at the last step: step,
    images/s over the last interval, the loss terms, and the ETA at that rate."""

    def __init__(self, total: int, start_step: int, every_s: float):
        self.total, self.every_s = total, every_s
        self.t_last, self.step_last = time.perf_counter(), start_step
        self.printed = False

    def due(self, step: int) -> bool:
        now = time.perf_counter()
        return not self.printed or step >= self.total or now - self.t_last >= self.every_s

    def line(self, step: int, epoch: int, images: int, losses: dict[str, float]) -> str:
        now = time.perf_counter()
        dt, steps = now - self.t_last, max(step - self.step_last, 1)
        self.t_last, self.step_last, self.printed = now, step, True
        eta = dt / steps * (self.total - step)
        terms = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
        rate = images / max(dt, 1e-9)
        return (f"step {step}/{self.total} epoch {epoch} | {rate:.{1 if rate >= 1 else 3}f} images/s, "
                f"{dt / steps:.2f} s/step | {terms} | ETA {duration(eta)}")  # fmt: skip


class StopRequest:
    """SIGINT / SIGTERM ask the loop to stop after the current step and save a checkpoint; a second
    Ctrl-C quits at once (the last checkpoint stays)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            self.restore()
            raise KeyboardInterrupt
        self.signum = signum
        say(f"\n{signal.Signals(signum).name}: stopping after the current step and saving a checkpoint "
            f"(Ctrl-C again quits now, keeping the last checkpoint)")  # fmt: skip

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None


def _to_cpu(obj):
    """A snapshot of a state dict on the CPU (tensors copied), safe to write while training goes on."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class CheckpointWriter:
    """Rank 0's checkpoint writes: the state is copied to host memory at once (consistent with the
    step), then `torch.save` runs in a thread while training continues, so the other ranks wait for
    no disk. Hand-written (a thread and a rename): torch.distributed.checkpoint's async_save writes
    a directory of shards, not the single file that `--resume` loads with weights_only=True."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.last_step: int | None = None

    def save(self, path: Path, state: dict, step: int, wait: bool = False) -> None:
        self.wait()
        snapshot = _to_cpu(state)
        self._thread = threading.Thread(target=self._write, args=(Path(path), snapshot), daemon=False)
        self._thread.start()
        self.last_step = step
        if wait:
            self.wait()

    def _write(self, path: Path, state: dict) -> None:
        try:
            tmp = path.with_name(path.name + ".tmp")
            torch.save(state, tmp)
            tmp.replace(path)  # atomic: a crash mid-write leaves the previous checkpoint
        except BaseException as exc:  # reported to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"writing the checkpoint failed: {err}") from err
