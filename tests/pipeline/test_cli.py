"""`pltd build`'s start-up refusals and the calibrate command, through the CLI (no cluster starts).

Consistency tests of the command line's contract (README: exit code 2, naming the file, field or path).
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pltd.pipeline.cli import app
from tests.helpers import folder_manifest


def test_bad_manifest_fails_at_start_naming_field(tmp_path):
    m = tmp_path / "bad.yaml"
    m.write_text("name: x\nsources: [{name: a, format: image_folder, root: /tmp, identiy: folder}]\n")
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "bad.yaml" in res.output and "sources.0" in res.output and "identiy" in res.output
    assert not (tmp_path / "run").exists()


def test_missing_root_fails_at_start_naming_path(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(f"name: x\nsources: [{{name: a, format: vggface2, root: {tmp_path}/nowhere}}]\n")
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and f"{tmp_path}/nowhere does not exist" in res.output


def test_unknown_force_stage_and_bad_root_flag(tmp_path):
    m = folder_manifest(tmp_path, 5, 5)
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "r"), "--force", "landmark"])
    assert res.exit_code == 2 and "--force landmark: unknown stage" in res.output
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "r"), "--root", "faces"])
    assert res.exit_code == 2 and "expected NAME=PATH" in res.output


def test_missing_teacher_checkpoint_fails_at_start_naming_file(tmp_path):
    m = folder_manifest(tmp_path, 3, 5)
    m.write_text(m.read_text() + f"landmarks: {{teacher: resnet50, teacher_checkpoint: {tmp_path}/teacher.pt}}\n")
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "r")])
    assert (
        res.exit_code == 2 and f"landmarks.teacher_checkpoint: model file {tmp_path}/teacher.pt not found" in res.output
    )


def test_calibrate_command_on_the_sample_pairs(sample_dir, tmp_path):
    out = tmp_path / "t.json"
    res = CliRunner().invoke(
        app, ["calibrate", str(sample_dir / "calibration/lfw_subset_pairs.bin"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["n_pairs"] == 100 and doc["accuracy"] >= 0.95 and 0 < doc["threshold"] < 1


def test_calibrate_refuses_a_malicious_pair_file(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("boom",))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([Evil()], [True])))
    res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "evil.bin")])
    assert res.exit_code == 2 and "refusing to load builtins.print" in res.output


def test_missing_face_recognition_files_fail_at_start(tmp_path):
    m = folder_manifest(tmp_path, 3, 5)
    m.write_text(m.read_text() + f"identities: {{networks: [dlib, checkpoint], checkpoints: [null, {tmp_path}/net_ms.pt], "
                 f"calibration_pairs: {tmp_path}/lfw.bin}}\n")  # fmt: skip
    res = CliRunner().invoke(app, ["build", str(m), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and f"identities.checkpoints.1: model file {tmp_path}/net_ms.pt not found" in res.output
