"""Storage requests a resumed `pltd build` makes before its first task, on 1,000 partitions.

    .venv/bin/python benchmarks/resume_requests.py [--before /tmp/before] [--partitions 1000]

The run lives on `counted://`, fsspec's in-memory filesystem with every request-like call counted
(exists/info = HEAD, open/cat_file = GET, ls/find = LIST, pipe/mv/rm = PUT/COPY/DELETE; `cat` of
N paths counts N). The scenario: an image_folder source planned into N one-image partitions, a
killed ingest stage with every partition but the last complete (markers written), then the same
build again: check, prepare, plan (reused), and the ingest stage up to the first `client.submit`
(a real Dask client, in-process). Only the driver's requests are counted.

`--before DIR` runs the same scenario on a checkout of the old layout (`git worktree add /tmp/before
f0e7dd0`), in a subprocess with that checkout first on `sys.path`, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading

from fsspec import register_implementation
from fsspec.implementations.memory import MemoryFileSystem

COUNTED = ("info", "exists", "ls", "find", "glob", "_open", "cat_file", "pipe_file", "mv", "rm", "rm_file", "makedirs")


class CountingFS(MemoryFileSystem):
    """In-memory filesystem counting the outermost request-like calls of the driver's main thread."""

    protocol = "counted"
    requests = 0
    depth = threading.local()

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str) and path.startswith("counted://"):
            path = "memory://" + path[len("counted://") :]
        return super()._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return "counted://" + name

    @classmethod
    def _count(cls, n: int = 1) -> bool:
        if threading.current_thread() is threading.main_thread() and getattr(cls.depth, "n", 0) == 0:
            CountingFS.requests += n
        return True

    def cat(self, path, recursive=False, on_error="raise", **kw):
        paths = path if isinstance(path, list) else [path]
        self._count(len(paths))
        self.depth.n = getattr(self.depth, "n", 0) + 1
        try:
            return super().cat(path, recursive=recursive, on_error=on_error, **kw)
        finally:
            self.depth.n -= 1


def _wrap(name: str):
    method = getattr(MemoryFileSystem, name)

    def counted(self, *a, **kw):
        self._count()
        self.depth.n = getattr(self.depth, "n", 0) + 1
        try:
            return method(self, *a, **kw)
        finally:
            self.depth.n -= 1

    return counted


for _name in COUNTED:
    setattr(CountingFS, _name, _wrap(_name))
register_implementation("counted", CountingFS, clobber=True)


def scenario(layout: str, n_parts: int) -> dict:
    from distributed import Client, LocalCluster
    from rich.console import Console

    fs = CountingFS()
    for i in range(n_parts):
        fs.pipe_file(f"/src/id{i % 7}/{i:05d}.jpg", b"")  # planning lists names only
    manifest_text = (
        "name: bench\nsources: [{name: faces, format: image_folder, root: counted:///src}]\n"
        "ingest: {rows_per_partition: 1}\n"
    )
    with open("/tmp/bench_resume.yaml", "w") as f:
        f.write(manifest_text)
    run, console = "counted:///run", Console(quiet=True)
    if layout == "old":
        from pipeline import build as b
        from pipeline.config import load_manifest
        from pipeline.plan import make_plan

        m = load_manifest("/tmp/bench_resume.yaml")
        sources = b.sources_of(m)

        def resume(client):
            b.check_sources(m)
            b.check_models(m)
            b.prepare_run(run, m, "m.yaml", [], console)
            plans = {s.name: make_plan(run, s, 1) for s in sources}
            b._run_partition_stage(client, "ingest", run, m, sources, plans, (), None, console)

        b.prepare_run(run, m, "m.yaml", [], console)
        make_plan(run, sources[0], 1)
    else:
        from pltd.pipeline import build as b
        from pltd.pipeline.config import load_manifest
        from pltd.pipeline.layout import RunLayout
        from pltd.pipeline.stage import BuildContext

        m = load_manifest("/tmp/bench_resume.yaml")

        def resume(client):
            ctx = BuildContext(m, RunLayout(run), console, b.sources_of(m), client=client)
            stages = b.stages_to_run(m, "ingest")
            b.check(ctx, stages)
            b.prepare(ctx, "m.yaml", [])
            b.plan(ctx)
            b.run_partition_stage(ctx, stages[0])

        ctx = BuildContext(m, RunLayout(run), console, b.sources_of(m))
        b.prepare(ctx, "m.yaml", [])
        b.plan(ctx)
    for i in range(n_parts - 1):  # the killed run: every partition but the last complete
        stats = {"stage": "ingest", "source": "faces", "part": i, "rows_in": 1, "rows_out": 0,
                 "rejected": {"empty_file": 1}, "seconds": 0.01, "worker": "bench"}  # fmt: skip
        fs.pipe_file(f"/run/ingest/faces/_done/part-{i:05d}.json", json.dumps(stats).encode())
    first: list[int] = []
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        submit = client.submit

        def counting_submit(*a, **kw):
            if not first:
                first.append(CountingFS.requests)
            return submit(*a, **kw)

        client.submit = counting_submit
        CountingFS.requests = 0
        resume(client)
    return {"layout": layout, "partitions": n_parts, "before_first_task": first[0], "stage_total": CountingFS.requests}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="checkout of the old layout (git worktree add /tmp/before f0e7dd0)")
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--layout", choices=["old", "new"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.layout:
        print(json.dumps(scenario(args.layout, args.partitions)))
        return
    results = []
    runs = [("new", None)] + ([("old", args.before)] if args.before else [])
    for layout, path in runs:
        env = {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)
        cmd = [sys.executable, __file__, "--layout", layout, "--partitions", str(args.partitions)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=path or None, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"{r['layout']}: {r['before_first_task']} storage requests before the first task, "
              f"{r['stage_total']} for the whole resumed stage ({r['partitions']} partitions)")  # fmt: skip
    if len(results) == 2:
        new, old = results
        print(f"before first task: {old['before_first_task']} → {new['before_first_task']} "
              f"(ratio {new['before_first_task'] / old['before_first_task']:.4f}); whole stage: "
              f"{old['stage_total']} → {new['stage_total']}")  # fmt: skip


if __name__ == "__main__":
    main()
