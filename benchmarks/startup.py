"""How fast `pltd build` refuses what it cannot do: a manifest with a typo, and a scheduler
address where nothing listens. Prints each figure (median of N runs), and before/after with the ratio.

    .venv/bin/python benchmarks/startup.py [--runs 5]
    .venv/bin/python benchmarks/startup.py --before /tmp/before-site    # compare with another checkout

`--before DIR`: a folder holding a `pltd` package laid out as installed (pltd/ with pipeline/,
stages/, trainer/ inside, e.g. symlinks into a `git worktree` of the earlier commit); it is put
first on PYTHONPATH and the command runs from a neutral working directory.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = "from pltd.pipeline.cli import main; main()"
BAD = "name: x\nsources:\n  - name: a\n    format: image_folder\n    root: /tmp\n    identiy: folder\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args: list[str], site: str | None, cwd: str) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": site} if site else dict(os.environ)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, env=env, cwd=cwd)
    return time.perf_counter() - t0, done.returncode, done.stdout + done.stderr


def measure(name: str, args: list[str], site: str | None, cwd: str, runs: int, run_dir: Path) -> float:
    times = []
    for _ in range(runs):
        seconds, rc, out = timed(args, site, cwd)
        times.append(seconds)
    left = "left a run directory" if run_dir.exists() else "nothing left"
    last = [line for line in out.splitlines() if line.strip()][-1][:110]
    print(f"  {name}: median {statistics.median(times):.2f} s (min {min(times):.2f}), rc {rc}, {left}; {last}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", help="site folder of the earlier pltd (see the docstring)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bad, good = Path(tmp) / "bad.yaml", Path(tmp) / "good.yaml"
        bad.write_text(BAD)
        faces = Path(tmp) / "faces" / "a"
        faces.mkdir(parents=True)
        (faces / "x.jpg").write_bytes(b"\xff\xd8\xff")  # not decoded: the build never gets that far
        good.write_text(f"name: g\nsources:\n  - name: a\n    format: image_folder\n    root: {faces.parent}\n")
        results: dict[str, list[float]] = {}
        for label, site in (("before", a.before), ("after", None)) if a.before else (("now", None),):
            print(f"{label}:")
            dead = f"tcp://127.0.0.1:{_free_port()}"
            for name, args, run in (
                ("manifest with a typo", ["build", str(bad), "--out", f"{tmp}/r1"], Path(tmp) / "r1"),
                ("dead scheduler", ["build", str(good), "--out", f"{tmp}/r2", "--cluster", dead], Path(tmp) / "r2"),
            ):
                results.setdefault(name, []).append(measure(name, args, site, tmp, a.runs, run))
                subprocess.run(["rm", "-rf", str(run)])
        if a.before:
            for name, (before, after) in results.items():
                print(f"{name}: {before:.2f} s → {after:.2f} s (ratio {after / before:.2f})")


if __name__ == "__main__":
    main()
