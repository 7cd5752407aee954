"""The label report (`pltd eval labels`, `benchmarks/label_quality.py`) on tiny tables whose every
figure is computed by hand in the comments: NME68 and inner-51 per yaw bin, pose MAE and bias,
accepted vs rejected, the Spearman correlation of fit_error and the keep-the-most-confident table."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pltd.pipeline.cli import app
from pltd.trainer.evaluation.labels import label_metrics, markdown_lines
from pltd.trainer.evaluation.metrics import (
    INNER51,
    keep_most_confident,
    nme,
    pose_bias,
    pose_mae,
    spearman,
    yaw_binned_nme,
)

# ground truth: 68 points in a 10 x 10 box (normaliser sqrt(10·10) = 10)
GT = np.random.default_rng(0).uniform(0, 10, (68, 2))
GT[20], GT[21] = (0, 0), (10, 10)


def shifted(dx: float = 0.0, dy: float = 0.0, jaw_only: bool = False) -> list[float]:
    p = GT.copy()
    p[: 17 if jaw_only else 68] += (dx, dy)
    return p.reshape(-1).tolist()


def row(status, yaw, pseudo=None, pose_err=(0, 0, 0), fit_error=None, teacher=None, second=None) -> dict:
    truth = [yaw, 10.0, -5.0]
    return {
        "image_id": f"i{yaw}",
        "label_kind": "ground_truth",
        "landmarks": shifted(),
        "pose": truth,
        "pseudo_status": status,
        "pseudo_landmarks": pseudo,
        "pseudo_pose": None if pseudo is None else [t + e for t, e in zip(truth, pose_err, strict=True)],
        "fit_error": fit_error,
        "single_teacher_landmarks": teacher,
        "single_teacher_pose": None if teacher is None else truth,
        "single_second_landmarks": second,
        "single_second_pose": None,
    }


def tiny_table() -> pa.Table:
    rows = [
        # yaw 10: label 0.5 px off → 5 %; teacher 1 px → 10 %; second 2 px on the jaw only → 17·2/68/10 = 5 %, inner 0
        row("accepted", 10, shifted(0.5), (0, 2, 0), 0.01, teacher=shifted(1), second=shifted(2, jaw_only=True)),
        row("accepted", 45, shifted(1), (0, -4, 0), 0.03),  # 10 %
        row("accepted", -70, shifted(0, 2), (3, 0, 0), 0.02),  # 20 %
        row("accepted", 20, shifted(), (0, 0, 0), 0.005),  # 0 %
        row("fit_spread_above_td", 5, None, teacher=shifted(3)),  # rejected, no label: its teacher pass, 30 %
        {**row("accepted", 0, shifted()), "label_kind": "pseudo"},  # not ground truth: ignored
    ]
    return pa.Table.from_pylist(rows)


def test_label_metrics_by_hand():
    r = label_metrics(tiny_table())
    assert (r["ground_truth_images"], r["accepted"], r["accepted_share"]) == (5, 4, 0.8)
    assert r["rejected_by_reason"] == {"fit_spread_above_td": 1}
    lab = r["methods"]["label"]
    # bins: 0–30 holds yaw 10 (5 %) and 20 (0 %), 30–60 yaw 45 (10 %), > 60 yaw −70 (20 %)
    assert lab["n"] == 4
    assert lab["nme68"]["0-30"] == {"nme": pytest.approx(2.5), "n": 2}
    assert lab["nme68"]["mean"] == pytest.approx((2.5 + 10 + 20) / 3)
    assert lab["nme68"]["all"] == pytest.approx(35 / 4)
    assert lab["inner51"]["all"] == pytest.approx(35 / 4)  # a constant shift: the same on every point
    # pose: yaw errors 0, 0, 3, 0; pitch +2, −4, 0, 0
    assert lab["pose"]["yaw"] == pytest.approx(0.75) and lab["pose"]["pitch"] == pytest.approx(1.5)
    assert lab["bias"]["yaw"] == pytest.approx(0.75) and lab["bias"]["pitch"] == pytest.approx(-0.5)
    assert lab["bias"]["roll"] == 0
    assert r["methods"]["label_all"]["n"] == 4  # the rejected row carries no label
    teacher = r["methods"]["single_teacher"]
    assert teacher["n"] == 2 and teacher["nme68"]["all"] == pytest.approx(20)  # 10 % and 30 %
    assert teacher["pose"]["mean"] == 0
    # on the accepted rows only (the label's faces): the teacher pass exists for the yaw-10 row alone
    assert r["methods"]["single_teacher_accepted"]["n"] == 1
    assert r["methods"]["single_teacher_accepted"]["nme68"]["all"] == pytest.approx(10)
    assert r["faces_per_bin"] == {"0-30": 3, "30-60": 1, "60-90": 1}  # every ground-truth row, rejected too
    second = r["methods"]["single_second"]
    assert second["nme68"]["all"] == pytest.approx(5) and second["inner51"]["all"] == pytest.approx(0)
    assert "pose" not in second  # no pose from that source
    ar = r["accepted_vs_rejected"]
    assert ar["accepted"] == {"n": 4, "nme68": pytest.approx(8.75), "inner51": pytest.approx(8.75)}
    assert ar["rejected"]["nme68"] == pytest.approx(30)
    assert ar["rejected"]["from"] == {"single_teacher_landmarks": 1}
    c = r["confidence"]
    # fit_error ranks 2 4 3 1 vs NME ranks 2 3 4 1: Σd² = 2, ρ = 1 − 6·2 / (4·15) = 0.8
    assert c["spearman_nme68"] == pytest.approx(0.8)
    keep = {k["percent"]: k for k in c["keep"]}
    assert keep[50]["n"] == 2 and keep[50]["nme68"] == pytest.approx(2.5)  # fit_error 0.005, 0.01
    assert keep[70]["n"] == 3 and keep[70]["nme68"] == pytest.approx(25 / 3) and keep[70]["threshold"] == 0.02
    assert keep[100]["nme68"] == pytest.approx(8.75)
    assert r["nme"] is lab["nme68"]  # the headline the generic report layout reads


def test_rejected_rows_with_a_label_use_it():
    t = pa.Table.from_pylist(
        [row("accepted", 0, shifted(1), fit_error=0.01), row("fit_error_above_td", 40, shifted(4), teacher=shifted(9))]
    )
    r = label_metrics(t)
    assert r["accepted_vs_rejected"]["rejected"] == {
        "n": 1,
        "from": {"pseudo_landmarks": 1},
        "nme68": pytest.approx(40),
        "inner51": pytest.approx(40),
    }
    assert r["methods"]["label"]["n"] == 1 and r["methods"]["label_all"]["n"] == 2
    assert r["methods"]["label_all"]["nme68"]["all"] == pytest.approx(25)


def test_no_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="no ground-truth rows"):
        label_metrics(pa.Table.from_pylist([{**row("accepted", 0), "label_kind": "pseudo"}]))


def test_inner51_ignores_the_jaw_with_the_68_point_normaliser():
    jaw = np.array(shifted(2, jaw_only=True)).reshape(68, 2)
    assert nme(jaw, GT)[0] == pytest.approx(17 * 2 / 68 / 10)
    assert nme(jaw, GT, INNER51)[0] == 0
    brow = GT.copy()
    brow[17] += (5.1, 0)  # one inner point 5.1 px off: 5.1 / 51 / 10
    assert nme(brow, GT, INNER51)[0] == pytest.approx(0.01)
    assert yaw_binned_nme(brow[None], GT[None], [50], INNER51)["30-60"]["nme"] == pytest.approx(1.0)


def test_pose_bias_is_signed_and_wrapped():
    truth = np.array([[90.0, 0, 0], [0, 10, 0], [0, 0, 120]])  # the third beyond 99°: not counted
    pred = np.array([[-179.0, 2, 0], [4, 6, 0], [0, 0, 0]])
    b = pose_bias(pred, truth)  # yaw −269 wraps to +91, then +4; pitch +2, −4
    assert b == {"n": 2, "yaw": pytest.approx(47.5), "pitch": pytest.approx(-1.0), "roll": 0}
    assert pose_mae(pred, truth)["pitch"] == pytest.approx(3.0)


def test_spearman_and_keep_most_confident_edge_cases():
    assert spearman([1, 2], [2, 1]) is None  # under 3 pairs
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    # NaN confidence counts as the least confident
    keep = keep_most_confident([np.nan, 0.1, 0.2, 0.3], {"e": np.array([100.0, 1, 2, 3])}, (25, 75, 100))
    assert [(k["n"], k["e"], k["threshold"]) for k in keep] == [(1, 1.0, 0.1), (3, 2.0, 0.3), (4, 26.5, 0.3)]


def test_markdown_names_every_method():
    text = "\n".join(markdown_lines(label_metrics(tiny_table())))
    for part in ("pseudo-label (accepted rows)", "one teacher pass", "one second-source pass", "| 50 % | 2 |", "0.80"):
        assert part in text
    assert "| rejected | 1 | 30.00 | 30.00 | single_teacher 1 |" in text


def test_pltd_eval_labels_on_a_run(tmp_path):
    run = tmp_path / "run"
    (run / "landmarks").mkdir(parents=True)
    pq.write_table(tiny_table(), run / "landmarks" / "part-00000.parquet")
    res = CliRunner().invoke(app, ["eval", "labels", str(run), "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "labels.json").read_text())["result"]
    assert report["methods"]["label"]["nme68"]["all"] == pytest.approx(8.75)
    assert report["confidence"]["spearman_nme68"] == pytest.approx(0.8)
    assert "one teacher pass" in res.output and "keep the most confident" in res.output
