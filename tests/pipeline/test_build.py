"""`pltd build` end to end: real LocalCluster, real scheduler + worker processes, SIGKILL and resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pltd.pipeline.cli import app
from tests.helpers import folder_manifest

PLTD = [sys.executable, "-m", "pltd.pipeline.cli"]


def pltd(*args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PLTD, *args], capture_output=True, text=True, env=env or os.environ.copy(), **kw)


def read_dir(url: Path) -> pa.Table:
    files = sorted(p for p in url.rglob("*.parquet") if "_done" not in p.parts)
    return pa.concat_tables([pq.read_table(p) for p in files]) if files else None


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, sample_dir):
    """One full build of the embedded sample (ingest + landmarks) on a LocalCluster, shared by tests."""
    env = {**os.environ, "PLTD_SAMPLE_DIR": str(sample_dir)}
    run = tmp_path_factory.mktemp("sample-run") / "run"
    done = pltd("build", "--out", str(run), env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return run, done, env


@pytest.mark.slow
def test_sample_build_accounts_for_every_image(sample_run, sample_dir):
    run, done, env = sample_run
    assert "Dask dashboard: http://" in done.stdout
    assert "Stages run: ingest, landmarks, embeddings, identities, assemble." in done.stdout
    rec = json.loads((run / "reconciliation.json").read_text())
    assert (
        rec["final_stage"] == "assemble" and rec["ok"] and rec["pltd_rows"] == 186
    )  # 206 in = 186 + 5 at ingest + 15 at landmarks
    ingest = {s: (v["images_in"], v["rejected_by_reason"]) for s, v in rec["sources"].items()}
    assert {s: n for s, (n, _) in ingest.items()} == {"vggface2": 67, "ms1mv3": 85, "300w_lp": 54}
    assert ingest["vggface2"][1]["ingest:decode_error"] == 1 and ingest["vggface2"][1]["ingest:empty_file"] == 1
    assert (
        ingest["vggface2"][1]["ingest:not_an_image"] == 1
        and "landmarks:fit_error_above_td" not in ingest["vggface2"][1]
    )
    assert ingest["ms1mv3"][1] == {"ingest:decode_error": 1, "landmarks:fit_error_above_td": 15}
    assert ingest["300w_lp"][1] == {"ingest:annotation_missing_field": 1}
    rows = read_dir(run / "ingest")
    assert rows.num_rows == 201 and len(set(rows.column("image_id").to_pylist())) == 201
    by_source = {}
    for r in rows.select(["source", "source_label"]).to_pylist():
        by_source.setdefault(r["source"], set()).add(r["source_label"])
    assert len(by_source["vggface2"]) == 16 and len(by_source["ms1mv3"]) == 21 and len(by_source["300w_lp"]) == 9
    resolved = (run / "manifest.resolved.yaml").read_text()
    assert "stage_settings_hash" in resolved and str(sample_dir) in resolved
    # rerun: every partition of every stage is complete, nothing recomputed, same account
    again = pltd("build", "--out", str(run), env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count("(8 already complete)") == 4
    assert "identities: already complete" in again.stdout
    shown = CliRunner().invoke(app, ["inspect", str(run)])
    assert shown.exit_code == 0 and "vggface2" in shown.output and "landmarks" in shown.output
    assert "45 identities in → 40 after merging" in shown.output and "PLTD: 186 rows, 40 identities" in shown.output
    # forcing assemble rewrites the shards too (they are cut from its files)
    before = (run / "pltd" / "dataset.json").stat().st_mtime
    forced = pltd("build", "--out", str(run), "--force", "assemble", env=env, timeout=300)
    assert forced.returncode == 0 and "cleared stage assemble" in forced.stdout
    assert (run / "pltd" / "dataset.json").stat().st_mtime > before and "pltd: 186 rows" in forced.stdout


@pytest.mark.slow
def test_sample_faces_get_landmarks_that_beat_a_single_pass(sample_run, tmp_path):
    run, _, _ = sample_run
    labels = read_dir(run / "landmarks").to_pylist()
    pseudo = [r for r in labels if r["label_kind"] == "pseudo"]
    # real faces; the consensus rejects the most uncertain of the 25 px LFW thumbnails (MS1MV3 part)
    assert len(pseudo) >= 0.85 * (64 + 84)
    for r in pseudo:  # the consensus uses every valid sample: 2 views + 2 mirrors of each source
        assert 4 <= r["n_samples"] <= 8 and r["fit_error"] <= 0.05 and len(r["landmarks"]) == 136
        assert r["n_teacher"] == 4 and r["n_teacher"] + r["n_second"] == r["n_samples"]
        assert all(-90 < a < 90 for a in r["pose"])
    assert sum(r["n_second"] == 4 for r in pseudo) > 0.8 * len(pseudo), "MediaPipe rarely finds the faces"
    audit = json.loads((run / "audit" / "landmarks.json").read_text())
    # The sample's 300W-LP reference is the mean of dlib and MediaPipe on the full-size photo, not
    # human ground truth (the audit says so): the fused label must beat one pass of the teacher on it.
    assert audit["reference"] == "synthetic"
    fit = audit["accepted/algorithm1"]["nme"]
    assert fit < audit["accepted/single_teacher"]["nme"] and fit < 0.035
    assert audit["accepted/algorithm1"]["mae_roll"] < 5.0  # the sample's one exact angle
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(app, ["show", str(run), "--out", str(out), "--limit", "12"])
    assert res.exit_code == 0 and out.stat().st_size > 10_000 and (tmp_path / "grid_rejected.png").exists()


@pytest.mark.slow
def test_sample_identities_merge_exactly_the_shared_people(sample_run):
    """dlib's descriptor, thresholds calibrated on LFW faces the sample does not use."""
    run, _, _ = sample_run
    report = json.loads((run / "identities" / "_done.json").read_text())
    assert report["calibration"]["n_pairs"] == 100 and min(report["calibration"]["accuracy"]) >= 0.95
    import pyarrow.parquet as pq

    dups = pq.read_table(run / "identities" / "duplicates.parquet").to_pylist()
    pairs = {(d["pass"], f"{d['source_a']}/{d['label_a']}", f"{d['source_b']}/{d['label_b']}") for d in dups}
    # sample layout (pipeline/sample.py): VGGFace2 n000001 = astronaut, n000002 = Grace Hopper,
    # n0000(i+3) = LFW face i; MS1MV3 label 0 = astronaut, label i-9 = LFW face i (10..29);
    # the 300W-LP part's first base photo is Grace Hopper.
    shared = {(1, "ms1mv3/0", "vggface2/n000001")} | {
        (1, f"ms1mv3/{i - 9}", f"vggface2/n{i + 3:06d}") for i in range(10, 14)
    }
    shared |= {(2, "vggface2/n000002", "300w_lp/HELEN_sample001_1")}
    # an identity all of whose images the landmarks stage rejected (uncertain labels of the sample's
    # 25 px LFW thumbnails) never reaches this stage: the shared people among those that do
    id_map = pq.read_table(run / "identities" / "id_map.parquet")
    present = {f"{r['source']}/{r['source_label']}" for r in id_map.to_pylist()}
    assert pairs == {p for p in shared if p[1] in present and p[2] in present} and len(pairs) >= 4
    assert 44 <= id_map.num_rows <= 46 and len(set(id_map.column("face_id").to_pylist())) == id_map.num_rows - len(
        pairs
    )
    assert (run / "identities" / "similarity_hist.png").stat().st_size > 5000


@pytest.mark.slow
def test_changed_settings_are_refused_until_forced(tmp_path):
    m = folder_manifest(tmp_path, 20, 8)
    run = tmp_path / "run"
    assert pltd("build", str(m), "--out", str(run), "--until", "ingest", timeout=300).returncode == 0
    m.write_text(m.read_text().replace("rows_per_partition: 8", "rows_per_partition: 5"))
    refused = pltd("build", str(m), "--out", str(run), "--until", "ingest", timeout=300)
    assert refused.returncode == 2 and "different settings for stage 'ingest'" in refused.stderr
    forced = pltd("build", str(m), "--out", str(run), "--force", "ingest", "--until", "ingest", timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert len(list((run / "ingest" / "faces" / "_done").glob("*.json"))) == 5  # 23 files / 5 per part


@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun_gives_the_uninterrupted_rows(tmp_path):
    m = folder_manifest(tmp_path, 240, 1)  # 243 one-row partitions: the stage lasts seconds
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert pltd("build", str(m), "--out", str(clean), "--until", "ingest", timeout=600).returncode == 0
    proc = subprocess.Popen(
        [*PLTD, "build", str(m), "--out", str(killed), "--until", "ingest"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the driver and its cluster die together
    )
    markers = killed / "ingest" / "faces" / "_done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(markers.glob("*.json")) if markers.exists() else []) < 20:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = len(list(markers.glob("*.json")))
    assert 20 <= at_kill < 243, f"kill did not land mid-stage ({at_kill} of 243 partitions complete)"
    assert not (killed / "reconciliation.json").exists()
    resumed = pltd("build", str(m), "--out", str(killed), "--until", "ingest", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({at_kill} already complete)" in resumed.stdout  # exactly the partitions complete at the kill
    for sub in ("ingest", "rejected"):
        a, b = read_dir(clean / sub), read_dir(killed / sub)
        a, b = a.sort_by("image_id"), b.sort_by("image_id")
        assert a.equals(b), f"{sub} differs after resume"
        assert len(set(b.column("image_id").to_pylist())) == b.num_rows
    rec = json.loads((killed / "reconciliation.json").read_text())["sources"]["faces"]
    assert (rec["images_in"], rec["accepted"], rec["rejected"]) == (243, 240, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sample_build_on_an_existing_scheduler_and_workers(tmp_path, sample_dir):
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    # --dashboard-address: even with --no-dashboard the scheduler serves /health on 0.0.0.0:8787 otherwise
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    procs = [subprocess.Popen([*scheduler, "--dashboard-address", "127.0.0.1:0"], **quiet)]
    try:
        worker = [dask, "worker", addr, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"]
        procs.append(subprocess.Popen([*worker, "--local-directory", str(tmp_path / "w")], **quiet))
        env = {**os.environ, "PLTD_SAMPLE_DIR": str(sample_dir)}
        done = pltd("build", "--out", str(tmp_path / "run"), "--cluster", addr, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 with a GPU)" in done.stdout
        rec = json.loads((tmp_path / "run" / "reconciliation.json").read_text())
        assert rec["ok"] and rec["total"]["images_in"] == 206 and rec["final_stage"] == "assemble"
        workers = {json.loads(p.read_text())["worker"] for p in (tmp_path / "run" / "landmarks").rglob("_done/*.json")}
        assert len(workers) == 2  # both external worker processes labelled partitions
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


@pytest.mark.slow
def test_index_match_and_mean_face_commands_on_the_sample_run(sample_run, tmp_path):
    run, _, _ = sample_run
    out = tmp_path / "map.json"
    res = CliRunner().invoke(app, ["index-match", str(run), "--out", str(out), "--max-images", "40"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    shipped = json.loads((Path(__file__).parents[2] / "stages/data/mediapipe_index_map.json").read_text())
    assert len(doc["indices"]) == 68 and max(doc["mean_error_over_face_size"]) < 0.15
    same = sum(a == b for a, b in zip(doc["indices"], shipped["indices"], strict=True))
    assert same >= 40  # learned from fewer images, mostly the same vertices as the shipped map
    face = tmp_path / "face.json"
    res = CliRunner().invoke(app, ["mean-face", str(run), "--out", str(face)])
    assert res.exit_code == 0, res.output
    pts = np.asarray(json.loads(face.read_text())["points"])
    assert pts.shape == (68, 3) and pts[30, 2] > pts[:, 2].mean()  # nose toward the camera
    assert pts[45, 0] > pts[36, 0] and pts[27, 1] > pts[8, 1]  # eyes left to right, brow above chin


@pytest.mark.slow
def test_the_sample_pltd_reads_as_is_everywhere(sample_run):
    run, _, _ = sample_run
    shards = sorted((run / "pltd").glob("part-*.parquet"))
    meta = pq.ParquetFile(shards[0]).schema_arrow.metadata
    assert meta[b"pltd.schema_version"] == b"2" and json.loads((run / "pltd/dataset.json").read_text())["rows"] == 186
    t = pq.read_table(shards)
    assert t.num_rows == 186 and t.schema.field("landmarks").type == pa.list_(pa.float32(), 136)
    assert t.schema.field("source").type == pa.dictionary(pa.int32(), pa.string())
    import duckdb
    import pandas as pd
    import polars as pl

    glob = str(run / "pltd" / "part-*.parquet")
    assert len(pd.read_parquet(shards[0])) == 186
    assert pl.read_parquet(glob).height == 186
    ids = duckdb.sql(f"SELECT count(DISTINCT face_id) AS n FROM read_parquet('{glob}')").fetchall()[0][0]
    assert ids == 40
    from datasets import load_dataset

    hf = load_dataset("parquet", data_files=[str(p) for p in shards], split="train")
    assert hf.num_rows == 186 and len(hf[0]["landmarks"]) == 136
    from pltd.trainer.data import PLTDDataset

    ds = PLTDDataset([str(p) for p in shards])
    assert sum(1 for _ in ds) == 186
    card = (run / "pltd" / "README.md").read_text()
    assert (
        "186 images, 40 identities" in card
        and "jaw points 0-16 3D-style" in card
        and (run / "pltd" / "pose_hist.png").exists()
    )
