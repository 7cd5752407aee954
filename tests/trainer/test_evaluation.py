"""Consistency tests of the evaluation code (pltd vs pltd, brute force, real file formats written
here). The conformance tests against insightface, 3DDFA, PIPNet and mmpose are in tests/conformance/."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from typer.testing import CliRunner

from pltd.checkpoints import save_checkpoint
from pltd.networks import create
from pltd.pipeline.cli import app
from pltd.stages.identities.calibrate import save_bin
from pltd.trainer.evaluation.metrics import pose_mae, ten_fold_accuracy
from pltd.trainer.evaluation.protocols import pair_scores, template_features


def test_ten_fold_accuracy_matches_a_brute_force_search():
    """Consistency: the vectorised search equals a per-threshold loop (lowest threshold on ties)."""
    rng = np.random.default_rng(0)
    same = rng.random(600) < 0.5
    dist = np.where(same, rng.normal(0.9, 0.25, 600), rng.normal(1.5, 0.25, 600)).clip(0, 3.99)  # squared
    acc, _, _ = ten_fold_accuracy(dist, same)
    folds, grid = np.array_split(np.arange(600), 10), np.arange(0, 4, 0.01)
    brute = []
    for test in folds:
        train = np.setdiff1d(np.arange(600), test)
        best = max(grid, key=lambda t: (((dist[train] < t) == same[train]).mean(), -t))
        brute.append(((dist[test] < best) == same[test]).mean())
    assert acc == pytest.approx(np.mean(brute))


def test_pose_mae_filters_and_wraps():
    truth = np.array([[10.0, 0, 0], [179.0, 0, 0], [120.0, 5, 5], [0, -100.0, 0]])
    pred = np.array([[12.0, 1, -1], [-179.0, 0, 0], [0.0, 0, 0], [0, 0, 0]])
    r = pose_mae(pred[:2], truth[:2], limit=None)
    assert r["yaw"] == pytest.approx(2.0) and r["pitch"] == pytest.approx(0.5)  # 179 vs −179 is 2°, not 358°
    f = pose_mae(pred, truth, limit=99.0)
    assert (f["n"], f["excluded"]) == (1, 3) and f["yaw"] == pytest.approx(2.0)


def test_media_averaged_templates():
    feats = np.array([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
    tids, tf = template_features(feats, np.array([7, 7, 7, 9]), np.array([1, 1, 2, 3]))
    # template 7: media 1 = mean([1,0],[0,1]) = [.5,.5], media 2 = [1,0] → sum [1.5,.5], normalised
    assert tids.tolist() == [7, 9] and np.allclose(tf[0], np.array([1.5, 0.5]) / np.hypot(1.5, 0.5))
    s = pair_scores(tids, tf, np.array([7, 9]), np.array([9, 7]))
    assert np.allclose(s, [tf[0] @ tf[1]] * 2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(path, create("iresnet_multi_tiny").eval(), "iresnet_multi_tiny", "multitask", 112)
    return path


def jpeg(seed: int, size=(112, 112)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(
        buf, format="JPEG"
    )
    return buf.getvalue()


def test_verification_on_a_bin_and_a_malicious_one_refused(tiny_model, tmp_path):
    save_bin(tmp_path / "lfw.bin", [jpeg(i) for i in range(40)], [bool(i % 2) for i in range(20)])
    res = CliRunner().invoke(app, ["eval", "verification", "--model", str(tiny_model), "--pairs", str(tmp_path / "lfw.bin"),
                                   "--out", str(tmp_path / "ev")])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "ev" / "verification.json").read_text())["result"]["lfw"]
    assert rep["pairs"] == 20 and 0 <= rep["accuracy"] <= 1  # random weights: plumbing only
    assert rep["threshold_cosine"] == pytest.approx(1 - rep["threshold"] / 2)

    class Evil:
        def __reduce__(self):
            return (print, ("no",))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([Evil()], [True])))
    res = CliRunner().invoke(
        app, ["eval", "verification", "--model", str(tiny_model), "--pairs", str(tmp_path / "evil.bin")]
    )
    assert res.exit_code != 0 and "refusing to load builtins.print" in str(res.exception or res.output)


def test_ijbc_meta_files_in_the_real_format(tiny_model, tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "loose_crop").mkdir()
    faces, pts = [], []
    for i in range(12):
        name = f"{i + 1}.jpg"
        (tmp_path / "loose_crop" / name).write_bytes(jpeg(i, (150, 150)))
        faces.append(f"{name} {100 + i // 3} {i // 2}")
        pts.append(name + " " + " ".join(f"{v:.2f}" for v in [50, 60, 100, 60, 75, 85, 55, 110, 95, 110]) + " 0.99")
    (tmp_path / "meta" / "ijbc_face_tid_mid.txt").write_text("\n".join(faces) + "\n")
    (tmp_path / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(pts) + "\n")
    (tmp_path / "meta" / "ijbc_template_pair_label.txt").write_text("100 101 0\n100 100 1\n102 103 0\n101 103 0\n")
    res = CliRunner().invoke(
        app, ["eval", "ijbc", "--model", str(tiny_model), "--root", str(tmp_path), "--out", str(tmp_path / "ev")]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "ev" / "ijbc.json").read_text())["result"]
    assert (
        rep["templates"] == 4
        and rep["pairs"] == 4
        and set(rep["tar_at_far"]) == {"1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1"}
    )
    assert rep["features"] == {"flip": "sum", "per_image_normalised": False, "faceness_weighted": True}
    assert "not normalised per image, × the detector's faceness score" in (tmp_path / "ev" / "ijbc.md").read_text()
    res = CliRunner().invoke(app, ["eval", "ijbc", "--model", str(tiny_model), "--root", str(tmp_path), "--out",
                                   str(tmp_path / "ev2"), "--normalise-images", "--no-faceness"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep2 = json.loads((tmp_path / "ev2" / "ijbc.json").read_text())["result"]
    assert rep2["features"] == {"flip": "sum", "per_image_normalised": True, "faceness_weighted": False}
    assert sum(rep[b]["pairs"] for b in ("soft", "medium", "hard")) >= 1


def test_aflw2000_counts_the_filtered_images(tiny_model, tmp_path):
    pts = np.stack([np.linspace(30, 90, 68), np.linspace(40, 100, 68), np.zeros(68)])
    for i, yaw in enumerate((0.2, -0.9, 1.9)):  # radians: the last is beyond 99°
        (tmp_path / f"image{i:05d}.jpg").write_bytes(jpeg(i, (120, 120)))
        scipy.io.savemat(
            tmp_path / f"image{i:05d}.mat", {"pt3d_68": pts, "Pose_Para": np.array([[0.1, yaw, 0.0, 0, 0, 0, 1]])}
        )
    res = CliRunner().invoke(
        app, ["eval", "aflw2000", "--model", str(tiny_model), "--root", str(tmp_path), "--out", str(tmp_path / "ev")]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "ev" / "aflw2000.json").read_text())["result"]
    assert rep["images"] == 3 and (rep["pose"]["n"], rep["pose"]["excluded"]) == (2, 1)
    # 0.2 rad = 11.5°, 0.9 rad = 51.6°, 1.9 rad = 108.9°: kept in the NME's third bin (3DDFA)
    assert [rep["nme"][b]["n"] for b in ("0-30", "30-60", "60-90")] == [1, 1, 1]
    assert set(rep["failure_rate"]) == {"0.08", "0.1"} and 0 <= rep["auc"]["0.1"] <= 1
    assert (tmp_path / "ev" / "aflw2000_ced.png").exists()
    md = (tmp_path / "ev" / "aflw2000.md").read_text()
    assert "AUC@0.10" in md and "mean of bins" in md
