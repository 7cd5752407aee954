"""The user's side of the commands: start-up errors that come fast, in one line, and leave
nothing behind; quiet logs; readable stats; the flags a user expects (`--version`, `-v`, `-q`).

Consistency tests of pltd's command-line contract (README, "Command line"); no cluster starts here
except where a test says so (`@pytest.mark.slow`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pltd.pipeline.cli import app
from tests.helpers import conformance_module, folder_manifest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_version_flag():
    from pltd import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"pltd {__version__}"


def test_dead_scheduler_is_a_start_up_error_that_leaves_nothing(tmp_path):
    """Refused by the TCP probe before the run directory exists — not after Dask's 30 s connect timeout."""
    m = folder_manifest(tmp_path, 3, 5)
    run = tmp_path / "run"
    address = f"tcp://127.0.0.1:{_free_port()}"
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(run), "--cluster", address])
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res.output)
    assert f"no Dask scheduler answers at {address}" in line and "dask scheduler" in line
    assert not run.exists()


def test_out_naming_a_file_is_one_line_rc_2(tmp_path):
    m = folder_manifest(tmp_path, 3, 5)
    (tmp_path / "afile").write_text("x")
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "afile")])
    assert (res.exit_code == 2 and res.exception is None) or isinstance(res.exception, SystemExit)
    assert _error_lines(res.output) == [
        f"error: --out {tmp_path / 'afile'}: is a file; name a run directory (new, or one a build wrote)"
    ]


def test_an_empty_root_is_refused_unless_the_manifest_allows_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    m = tmp_path / "m.yaml"
    m.write_text(f"name: e\nsources:\n  - name: a\n    format: image_folder\n    root: {empty}\n")
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert _error_lines(res.output) == [
        f"error: source 'a': no images under {empty} (format image_folder); fix the root, or set `allow_empty: true` on the source"
    ]
    assert not (tmp_path / "run").exists()


def test_allow_empty_lets_the_plan_pass_with_zero_images(tmp_path):
    """The planning step itself (no cluster: the folder is listed on the driver without a client)."""
    from rich.console import Console

    from pltd.pipeline.build import StartupError, plan, sources_of
    from pltd.pipeline.config import load_manifest
    from pltd.pipeline.layout import RunLayout
    from pltd.pipeline.stage import BuildContext

    root = tmp_path / "only_text"
    root.mkdir()
    (root / "notes.txt").write_text("not an image")
    m = tmp_path / "m.yaml"
    for allow, expect in ((False, StartupError), (True, None)):
        m.write_text(
            f"name: e\nsources:\n  - name: a\n    format: image_folder\n    root: {root}\n    allow_empty: {str(allow).lower()}\n"
        )
        manifest = load_manifest(m)
        ctx = BuildContext(
            manifest, RunLayout(str(tmp_path / f"run{allow}")), Console(quiet=True), sources_of(manifest)
        )
        if expect:
            with pytest.raises(StartupError, match="not images: not_an_image_extension=1"):
                plan(ctx)
        else:
            plan(ctx)
            assert ctx.plans["a"]["images"] == 0 and ctx.plans["a"]["partitions"] == 0


def test_allow_empty_does_not_change_the_settings_hash(tmp_path):
    from pltd.pipeline.config import load_manifest

    hashes = []
    for extra in ("", "    allow_empty: true\n"):
        m = tmp_path / "m.yaml"
        m.write_text(f"name: e\nsources:\n  - name: a\n    format: image_folder\n    root: {tmp_path}\n{extra}")
        hashes.append(load_manifest(m).section_hash("sources", "ingest"))
    assert hashes[0] == hashes[1]


def test_missing_calibration_pairs_names_the_file_kind_and_pltd_sample(tmp_path):
    m = folder_manifest(tmp_path, 3, 5)
    m.write_text(m.read_text() + f"identities: {{networks: [dlib, dlib], calibration_pairs: {tmp_path}/lfw.bin}}\n")
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    (line,) = _error_lines(res.output)
    assert f"identities.calibration_pairs: calibration pairs file {tmp_path}/lfw.bin not found" in line
    assert "pltd sample" in line and "model file" not in line


def test_set_with_a_typo_blames_the_flag_not_the_preset(tmp_path):
    res = CliRunner().invoke(app, ["train", "--preset", "mtl", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--set", "batchsize=4"])  # fmt: skip
    assert res.exit_code == 2
    assert _error_lines(res.output) == ["error: --set batchsize=4: batchsize: unknown field (did you mean batch_size?)"]


def test_data_naming_a_run_directory_suggests_its_pltd(tmp_path):
    run = tmp_path / "run"
    (run / "pltd").mkdir(parents=True)
    (run / "pltd" / "part-00000.parquet").write_bytes(b"")
    res = CliRunner().invoke(app, ["train", "--preset", "mtl", "--data", str(run), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    (line,) = _error_lines(res.output)
    assert line.endswith(f"{run} is a run directory: use --data {run / 'pltd'}")


HEAVY = ("distributed", "torch", "mediapipe", "dlib", "pandas", "scipy.spatial", "scipy.io", "faiss")


def test_a_bad_manifest_is_reported_before_any_heavy_import(tmp_path):
    """What makes validation fast: none of the heavy packages is imported to report a typo
    (the time itself is measured by `benchmarks/startup.py`, never asserted)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources:\n  - name: a\n    format: image_folder\n    root: /tmp\n    identiy: folder\n")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom pltd.pipeline.cli import app\n"
        f"r = CliRunner().invoke(app, ['build', {str(bad)!r}])\n"
        f"print(r.exit_code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.stdout.split("\n")[0] == "2 []", out.stdout + out.stderr


def test_profiles_ship_in_the_package_and_ignore_the_working_directory(tmp_path, monkeypatch):
    from pltd.pipeline.cluster import SHIPPED_CLUSTER_FILE, default_cluster_file, load_profile

    (tmp_path / "dask_cluster.yaml").write_text("default: nowhere\nprofiles: {}\n")  # a decoy in the cwd
    monkeypatch.chdir(tmp_path)
    assert default_cluster_file({}) == SHIPPED_CLUSTER_FILE and load_profile(None, env={}).kind == "local"
    own = tmp_path / "mine.yaml"
    own.write_text("default: big\nprofiles:\n  big: {kind: local, n_workers: 7}\n")
    assert load_profile(None, env={"PLTD_CLUSTER_FILE": str(own)}).n_workers == 7
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = package_data["pltd.pipeline"]
    assert any(SHIPPED_CLUSTER_FILE.match(f"pipeline/{g}") for g in globs), globs  # in the wheel too
    # one source: the root file; the package's copy is a link to it (the wheel's, a copy: test_wheel.py)
    assert SHIPPED_CLUSTER_FILE.resolve() == (REPO / "dask_cluster.yaml").resolve()


def test_stats_read_as_text_not_as_python_dicts():
    from pltd.pipeline.card import summary_lines
    from pltd.pipeline.text import counts_text, numbers_text

    assert counts_text({"empty_file": 1, "decode_error": 2}) == "3 (decode_error 2, empty_file 1)"
    assert counts_text({}) == counts_text(None) == "0" and numbers_text([0.97421379, 0.5]) == "0.9742, 0.5000"
    summary = {  # as read back from dataset.json, whose keys are sorted
        "images_per_identity": {"max": 9, "mean": 5.02, "median": 4.0, "min": 4},
        "label_kind": {"ground_truth": 53, "pseudo": 148},
        "pose_abs_mean": {"pitch": 6.5, "roll": 6.76, "yaw": 5.6},
        "yaw_buckets": {"0-30": 190, "30-60": 10, "60-90+": 1},
        "fit_error_pseudo": {"median": 0.001937, "p95": 0.0030218},
        "n_samples_pseudo": {"3": 140, "4": 8},
    }
    text = "\n".join(summary_lines(summary))
    assert "{" not in text and "'" not in text
    assert "yaw 5.6°, pitch 6.5°, roll 6.8°" in text and "0-30°: 190, 30-60°: 10, 60-90+°: 1" in text
    assert "median 0.0019, 95th percentile 0.0030" in text and "3 samples: 140, 4 samples: 8" in text


def test_quiet_prints_nothing_and_errors_still_show(tmp_path):
    res = CliRunner().invoke(app, ["-q", "sample", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0 and res.stdout == ""
    res = CliRunner().invoke(app, ["-q", "inspect", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no build.json" in res.output


def test_native_stderr_goes_to_the_log_file(tmp_path):
    """A write to descriptor 2 (as MediaPipe's C++ logging does) lands in the file, not on stderr."""
    log = tmp_path / "logs" / "driver.log"
    code = (
        "import os\nfrom pltd.pipeline.worker_logs import stderr_to\n"
        f"with stderr_to({str(log)!r}):\n    os.write(2, b'W0000 native noise\\n')\n"
        "os.write(2, b'after\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "after\n" and log.read_text() == "W0000 native noise\n"


def test_caption_lines_wrap_without_losing_anything():
    from pltd.pipeline.show import CHARS, caption_lines, rejected_caption

    row = {"source": "ms1mv3", "stage": "ingest", "reason": "decode_error", "record_index": 85,
           "detail": "record 85 at byte 263988: image file is truncated (17 bytes not processed)",
           "source_path": "/data/ms1mv3/train.rec"}  # fmt: skip
    cap = rejected_caption(row)
    lines = caption_lines(cap)
    assert all(len(line) <= CHARS for line in lines)
    assert "".join(lines).replace(" ", "") == cap.replace(" | ", "").replace(" ", "")
    assert lines[0] == "ms1mv3" and lines[1] == "ingest: decode_error" and lines[-1] == "record 85"


def test_calibration_in_chunks_equals_one_call(sample_dir):
    from pltd.pipeline.progress import pair_cosines
    from pltd.stages.identities.calibrate import load_bin, pair_similarities, whole_image_landmarker
    from pltd.stages.identities.networks import create_network

    bins, _ = load_bin(sample_dir / "calibration/lfw_subset_pairs.bin")
    bins = bins[:50]  # 25 pairs: three chunks
    net, lm = create_network("dlib", None), whole_image_landmarker()
    seen = []
    chunked = pair_cosines(bins, net, lm, seen.append)
    assert seen == [10, 10, 5]
    assert chunked.tolist() == pair_similarities(bins, net, lm).tolist()


def test_dashboard_link_only_when_one_answers():
    """bokeh is a dependency, so a local cluster's dashboard is real; a scheduler without one gets None
    (the build then says so instead of printing a link that leads nowhere)."""
    from distributed import Client, LocalCluster

    from pltd.pipeline.cluster import dashboard_link

    local = LocalCluster(n_workers=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    with local as c, Client(c) as client:
        assert dashboard_link(client) == client.dashboard_link
    port = _free_port()
    dask = Path(sys.executable).with_name("dask")
    args = [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
            "--dashboard-address", f"127.0.0.1:{_free_port()}"]  # fmt: skip
    scheduler = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout="60s") as client:
            assert dashboard_link(client) is None
    finally:
        scheduler.terminate()
        scheduler.wait(30)


NOISE = ("XNNPACK", "inference_feedback_manager", "absl::InitializeLog", "still alive", "CancelledError", "Traceback")


def _faces_manifest(tmp_path: Path, sample_dir: Path) -> Path:
    """8 real faces (2 identities of the sample), the whole pipeline, thresholds given (no calibration)."""
    import shutil

    root = tmp_path / "faces"
    for ident in ("n000001", "n000002"):
        shutil.copytree(sample_dir / "vggface2" / "train" / ident, root / ident)
    m = tmp_path / "faces.yaml"
    m.write_text(f"name: faces\nsources:\n  - name: faces\n    format: image_folder\n    root: {root}\n"
                 "landmarks: {views: 4, teacher: dlib68, second: mediapipe, blink: mediapipe_ear, mean_face: shipped, "
                 "jaw_style: 2d}\n"
                 "identities: {networks: [dlib, dlib], thresholds: [0.9, 0.9]}\n")  # fmt: skip
    return m


def _pltd(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pltd.pipeline.cli", *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PLTD_WORKERS": "2", **(env or {})})  # fmt: skip


@pytest.mark.slow
def test_a_build_is_quiet_its_logs_are_in_run_logs_and_its_outputs_are_typed(tmp_path, sample_dir):
    """MediaPipe runs in both workers; nothing of it (or of Dask's shutdown) reaches the terminal."""
    run = tmp_path / "run"
    done = _pltd("build", str(_faces_manifest(tmp_path, sample_dir)), "--out", str(run))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [n for n in NOISE if n in done.stdout + done.stderr], done.stderr
    logged = "".join(p.read_text() for p in (run / "logs").glob("worker-*.log"))
    assert "XNNPACK" in logged or "inference_feedback_manager" in logged  # the noise was there, in the files
    stats = (run / "stats" / "identities.json").read_text()
    assert '"wall_seconds"' in stats
    shown = CliRunner().invoke(app, ["inspect", str(run)])
    ident = next(line for line in shown.output.splitlines() if line.startswith("stage identities"))
    assert ident.endswith("s wall") and "thresholds 0.9000, 0.9000" in ident
    datasets = conformance_module("datasets", "datasets")
    ds = datasets.load_dataset(str(run / "pltd"), split="train")
    rows = json.loads((run / "pltd" / "dataset.json").read_text())["rows"]
    assert isinstance(ds.features["image"], datasets.Image) and ds.num_rows == rows > 0
    assert ds[0]["image"].size == (ds[0]["width"], ds[0]["height"])


@pytest.mark.slow
def test_verbose_shows_the_worker_logs(tmp_path, sample_dir):
    run = tmp_path / "run"
    done = _pltd("-v", "build", str(_faces_manifest(tmp_path, sample_dir)), "--out", str(run), "--until", "landmarks")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "XNNPACK" in done.stderr or "inference_feedback_manager" in done.stderr
    assert not (run / "logs").exists()


@pytest.mark.slow
def test_the_rejected_sheet_draws_what_the_run_stored(tmp_path, sample_dir):
    """The sample's five bad inputs, a rejected RecordIO record among them (it has no `offset` column)."""
    from pltd.pipeline.show import _tables, rejected_tiles

    run = tmp_path / "run"
    done = _pltd("build", "--out", str(run), "--until", "ingest", env={"PLTD_SAMPLE_DIR": str(sample_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    ingested = {r["image_id"]: r for r in _tables(str(run), "ingest").to_pylist()}
    tiles = rejected_tiles(str(run), _tables(str(run), "rejected").to_pylist(), ingested)
    captions = {c.split(" | ")[2]: why for _, c, why in tiles}
    assert set(captions) == {"0 bytes", "missing Pose_Para", "37 bytes of an unknown format",
                             "image file is truncated (1 bytes not processed)",
                             "record 85 at byte 263988: image file is truncated (17 bytes not processed)"}  # fmt: skip
    assert captions["missing Pose_Para"] is None  # the image itself decodes: it is drawn
    record = captions["record 85 at byte 263988: image file is truncated (17 bytes not processed)"]
    assert record.startswith("ImageProblem: decode_error")  # read through the plan's offset, not a KeyError
