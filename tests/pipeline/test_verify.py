"""Damaged partitions: markers carry rows, bytes and SHA-256; a resume checks sizes, `pltd verify` checksums.

Consistency tests (pltd vs pltd): files written by the runner on a real LocalCluster, then truncated,
extended or altered on disk as a failing disk or a stray process would.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pltd.pipeline import storage
from pltd.pipeline.cli import app
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.partition import Job, PartitionTask
from pltd.pipeline.runner import run_stage
from pltd.pipeline.shards import write_shard
from pltd.pipeline.verify import verify_run
from tests.pipeline.test_runner import numbers


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


def jobs(run, n):
    return [Job(PartitionTask(str(run), "toy", "src", p), numbers, (p, 7)) for p in range(n)]


def task(run, p) -> PartitionTask:
    return PartitionTask(str(run), "toy", "src", p)


def test_marker_carries_rows_bytes_and_checksum(client, tmp_path):
    run_stage(client, "toy", jobs(tmp_path, 2), {}, Console(quiet=True))
    m = json.loads(Path(task(tmp_path, 1).marker).read_text())
    data = Path(task(tmp_path, 1).output).read_bytes()
    assert m["files"]["output"] == {"rows": 4, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert m["files"]["rejected"]["rows"] == 3 and m["rows_out"] == 4


def test_resume_recomputes_truncated_and_extended_files(client, tmp_path):
    console = Console(quiet=True)
    run_stage(client, "toy", jobs(tmp_path, 6), {}, console)
    originals = {p: Path(task(tmp_path, p).output).read_bytes() for p in range(6)}
    rejected4 = Path(task(tmp_path, 4).rejected).read_bytes()
    with open(task(tmp_path, 2).output, "r+b") as f:
        f.truncate(len(originals[2]) // 2)
    with open(task(tmp_path, 4).rejected, "ab") as f:
        f.write(b"junk")
    again = run_stage(client, "toy", jobs(tmp_path, 6), {}, console)
    assert sorted(t.part for t, _ in again.recomputed) == [2, 4] and again.skipped == 4
    why = dict((t.part, w) for t, w in again.recomputed)
    assert why[4] == f"rejected file part-00004.parquet is {len(rejected4) + 4} bytes, its marker says {len(rejected4)}"
    assert {p: Path(task(tmp_path, p).output).read_bytes() for p in range(6)} == originals
    assert Path(task(tmp_path, 4).rejected).read_bytes() == rejected4
    assert again.summary()["rows_in"] == 42 and verify_run(RunLayout(str(tmp_path))).ok


def test_same_size_alteration_found_by_verify_then_fixed_and_rebuilt(client, tmp_path):
    console = Console(quiet=True)
    run_stage(client, "toy", jobs(tmp_path, 3), {}, console)
    good = Path(task(tmp_path, 1).output).read_bytes()
    layout = RunLayout(str(tmp_path))
    pieces = [(task(tmp_path, p).output, 0, 4) for p in range(3)]
    shard = write_shard(layout.shard(0), pieces, storage.read_table(task(tmp_path, 0).output).schema, 100, {})
    storage.write_json(layout.dataset_json, {"rows": 12, "shards": [shard]})
    runner = CliRunner()
    clean = runner.invoke(app, ["verify", str(tmp_path)])
    assert clean.exit_code == 0 and "3 partitions, 1 shards checked: clean" in clean.output
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # one byte inside the data pages: same size
    Path(task(tmp_path, 1).output).write_bytes(bytes(flipped))
    assert not run_stage(client, "toy", jobs(tmp_path, 3), {}, console).recomputed  # sizes agree: not seen
    shard_file = tmp_path / "pltd" / "part-00000.parquet"
    shard_file.write_bytes(shard_file.read_bytes()[:-10])
    bad = runner.invoke(app, ["verify", str(tmp_path), "--fix"])
    assert bad.exit_code == 1, bad.output
    assert "toy/src/part-00001 output" in bad.output and "checksum differs" in bad.output
    assert "pltd/part-00000.parquet" in bad.output and "expected" in bad.output
    assert not storage.exists(task(tmp_path, 1).marker) and not storage.exists(layout.dataset_json)
    again = run_stage(client, "toy", jobs(tmp_path, 3), {}, console)
    assert again.skipped == 2 and Path(task(tmp_path, 1).output).read_bytes() == good


def test_verify_refuses_a_missing_run(tmp_path):
    res = CliRunner().invoke(app, ["verify", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such run directory" in res.output
