"""Repeated worker loss during a full sample build: kills survived and time overhead.

    .venv/bin/python benchmarks/chaos.py --mode clean   --out /tmp/chaos/clean
    .venv/bin/python benchmarks/chaos.py --mode nanny   --out /tmp/chaos/nanny  --reference /tmp/chaos/clean
    .venv/bin/python benchmarks/chaos.py --mode shrink  --out /tmp/chaos/shrink --reference /tmp/chaos/clean
    .venv/bin/python benchmarks/chaos.py --mode vanish  --out /tmp/chaos/vanish --reference /tmp/chaos/clean

Each run starts its own `dask scheduler` and workers on 127.0.0.1 (processes this script starts and
ends) and `pltd build` of the embedded sample against them (`--cluster tcp://…`):

- `nanny`: `dask worker --nworkers W`; every `--interval` seconds a random worker process is
  SIGKILLed and its nanny starts a new one (at most `--max-kills`);
- `shrink`: W workers without nannies; every `--interval` seconds one is SIGKILLed for good, until
  one is left;
- `clean`: the same cluster, no kills (the baseline);
- `vanish`: `pltd build` on its own local cluster (W workers); after `--interval` seconds every worker
  process is SIGKILLed, again and again, until the build gives up: it must stop with rc 1 and the
  no-workers line within `--no-workers-timeout` (plus its restarts), and the resume command it prints
  must finish the PLTD.

After the build: if it failed, the failed partitions it listed are printed and the same command is
run again on what is left of the cluster. The PLTD's shards are then compared byte for byte with
`--reference` (a clean run). Prints one JSON line: wall seconds, kills, return codes, identical.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).with_name("dask"))
QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_processes(procs: list[subprocess.Popen], mode: str, min_age: float) -> list[psutil.Process]:
    """The processes that run tasks, up for at least `min_age` s: the nannies' children (nanny mode) or
    the workers themselves. A worker killed while it starts is not restarted by its nanny (the nanny
    closes; with every nanny closed the pool is empty and the build waits): the harness kills running
    workers only."""
    live = [psutil.Process(p.pid) for p in procs if p.poll() is None]
    if mode == "nanny":
        kids = [c for p in live for c in p.children(recursive=False)]
        live = [c for c in kids if "resource_tracker" not in " ".join(c.cmdline())]
    return [p for p in live if time.time() - p.create_time() >= min_age]


def start_cluster(mode: str, workers: int, tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    sched = [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    sched += ["--dashboard-address", "127.0.0.1:0"]  # its HTTP routes listen even without a dashboard
    procs = [subprocess.Popen(sched, **QUIET)]
    common = [DASK, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
    common += ["--memory-limit", "3GiB", "--local-directory", str(tmp / "dask")]
    if mode == "shrink":
        procs += [subprocess.Popen([*common, "--no-nanny"], **QUIET) for _ in range(workers)]
    else:
        procs.append(subprocess.Popen([*common, "--nworkers", str(workers)], **QUIET))
    return address, procs


def build(address: str | None, run: Path, log: Path, env=None) -> tuple[subprocess.Popen, float]:
    """`pltd build` of the embedded sample (made once in pltd's default sample folder) in the background;
    no `address`: on its own local cluster."""
    t0 = time.perf_counter()
    cluster = ["--cluster", address] if address else []
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pltd.pipeline.cli", "build", "--out", str(run), *cluster],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc, t0


def local_workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes of a build's own LocalCluster (its nannies run inside the build)."""
    out = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def vanish(args, run: Path) -> dict:
    """Every local worker killed, repeatedly, from `--interval` s on; then the printed resume command."""
    env = {**os.environ, "PLTD_WORKERS": str(args.workers)}
    env["DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT"] = f"{args.no_workers_timeout}s"
    proc, t0 = build(None, run, args.out / "build.log", env)
    kills, first = 0, None
    while proc.poll() is None:
        time.sleep(0.1)
        if time.perf_counter() - t0 < args.interval:
            continue
        first = first or time.perf_counter()
        for p in local_workers(proc):
            p.send_signal(signal.SIGKILL)
            kills += 1
    end = time.perf_counter()
    wall = end - t0
    log = (args.out / "build.log").read_text()
    errors = [ln for ln in log.splitlines() if ln.startswith("error:")]
    resume = errors[-1].rsplit("resume with: ", 1)[-1].split() if errors and "resume with: " in errors[-1] else []
    again = {}
    if resume:
        t1 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "pltd.pipeline.cli", *resume[1:]], capture_output=True).returncode
        again = {"rc": rc, "seconds": round(time.perf_counter() - t1, 1)}
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 1),
        "kills": kills,
        "stopped_after_first_kill_s": round(end - first, 1) if first else None,
        "error_line": errors[-1] if errors else None,
        "reruns": [again] if again else [],
        "final_rc": again.get("rc", proc.returncode),
    }


def shards(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "pltd").glob("part-*.parquet"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("clean", "nanny", "shrink", "vanish"), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reference", type=Path, help="a clean run to compare the PLTD with")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--interval", type=float, default=8.0, help="seconds between kills")
    ap.add_argument("--max-kills", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-age", type=float, default=20.0, help="kill only workers up for this many seconds")
    ap.add_argument("--no-workers-timeout", type=float, default=20.0, help="vanish: seconds without workers")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "run"
    if args.mode == "vanish":
        result = {"mode": "vanish", "workers": args.workers, "no_workers_timeout_s": args.no_workers_timeout}
        result |= vanish(args, run)
        if args.reference:
            result["pltd_identical"] = shards(run) == shards(args.reference / "run") and bool(shards(run))
        (args.out / "result.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        return
    address, procs = start_cluster(args.mode, args.workers, args.out)
    kills, reruns = [], []
    try:
        time.sleep(5)  # workers register
        proc, t0 = build(address, run, args.out / "build.log")
        next_kill = time.monotonic() + args.interval
        while proc.poll() is None:
            time.sleep(0.2)
            if args.mode == "clean" or len(kills) >= args.max_kills or time.monotonic() < next_kill:
                continue
            next_kill = time.monotonic() + args.interval
            victims = worker_processes(procs[1:], args.mode, args.min_age)
            if args.mode == "shrink" and len(worker_processes(procs[1:], args.mode, 0)) <= 1:
                continue
            if victims:
                v = rng.choice(victims)
                v.send_signal(signal.SIGKILL)
                kills.append(round(time.perf_counter() - t0, 1))
        first_rc, wall = proc.returncode, time.perf_counter() - t0
        log = (args.out / "build.log").read_text()
        failed = [ln for ln in log.splitlines() if "failed" in ln.lower() or "error:" in ln]
        rc = first_rc
        while rc != 0 and len(reruns) < 2:  # the same command again, on what is left of the cluster
            again, t1 = build(address, run, args.out / f"rerun{len(reruns) + 1}.log")
            rc = again.wait()
            reruns.append({"rc": rc, "seconds": round(time.perf_counter() - t1, 1)})
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    result = {
        "mode": args.mode,
        "workers": args.workers,
        "interval_s": args.interval,
        "wall_s": round(wall, 1),
        "rc": first_rc,
        "kills": len(kills),
        "kill_times_s": kills,
        "failed_lines": failed[:10],
        "reruns": reruns,
        "final_rc": rc,
    }
    if args.reference:
        ref = json.loads((args.reference / "result.json").read_text())
        result["overhead_vs_clean"] = round(wall / ref["wall_s"], 2)
        result["pltd_identical"] = shards(run) == shards(args.reference / "run") and bool(shards(run))
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
