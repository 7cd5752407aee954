"""`pltd eval labels`: a run's pseudo-labels against the ground truth its sources carry.

The ground-truth rows of the landmarks stage (an `aflw2000` or `300w_lp` source) carry the dataset's
labels in `landmarks`/`pose`, the pseudo-label Algorithm 1 made of the same photo in
`pseudo_landmarks`/`pseudo_pose`/`pseudo_status`, its `fit_error`, and one pass (view 0) of each
source in `single_teacher_*` and `single_second_*`. `label_metrics` compares each with the ground
truth; `benchmarks/label_quality.py` reports through the same function, so the benchmark and the
command print the same numbers.

Methods (each on the ground-truth rows where it has a value, counted):
- `label`: the pseudo-label of the accepted rows — what the PLTD holds;
- `label_all`: the pseudo-label of every row that carries one, accepted or rejected (the same faces
  as the single passes, when the fusion gives rejected rows a label);
- `single_teacher`, `single_second`: one pass of each source on view 0;
- `single_teacher_accepted`, `single_second_accepted`: the same on the accepted rows only — the
  faces of `label`, so that the label and each pass are compared on the same photos.

Per method: NME68 and inner-51 NME (points 17–67, the same normaliser) per 3DDFA |yaw| bin with the
mean of the bins and the mean over faces; pose MAE and signed bias per axis over the faces whose
|angles| all lie within 99°. Then the accepted share, the NME of accepted vs rejected rows, and how
well `fit_error` ranks the true error (Spearman; "keep the X % most confident → NME").
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pltd.trainer.evaluation.metrics import (
    INNER51,
    binned,
    keep_most_confident,
    nme,
    pose_bias,
    pose_mae,
    spearman,
    yaw_bins,
)

METHODS = {  # report name: (landmarks column, pose column, accepted rows only)
    "label": ("pseudo_landmarks", "pseudo_pose", True),
    "label_all": ("pseudo_landmarks", "pseudo_pose", False),
    "single_teacher": ("single_teacher_landmarks", "single_teacher_pose", False),
    "single_second": ("single_second_landmarks", "single_second_pose", False),
    "single_teacher_accepted": ("single_teacher_landmarks", "single_teacher_pose", True),
    "single_second_accepted": ("single_second_landmarks", "single_second_pose", True),
}
TITLES = {
    "label": "pseudo-label (accepted rows)",
    "label_all": "pseudo-label (every row with one)",
    "single_teacher": "one teacher pass",
    "single_second": "one second-source pass",
    "single_teacher_accepted": "one teacher pass (accepted rows)",
    "single_second_accepted": "one second-source pass (accepted rows)",
}
KEEP_PERCENTS = (50, 70, 90, 100)

JAW_STYLE_HINT = (
    "landmarks.jaw_style: ground truth in another jaw style than "
    "the PLTD's is pseudo-labelled, not audited (AFLW2000-3D is 3D-style; "
    "300W-LP is 2D-style, 3D-style with its landmarks/ folder)"
)


def _errors(pred: list, truth: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-face NME68 and inner-51 NME in %."""
    p, t = np.array(pred, float), np.array(truth, float)
    return nme(p, t) * 100, nme(p, t, INNER51) * 100


def method_metrics(pred_lm: list, gt_lm: list, gt_pose: list, pred_pose: list) -> dict:
    """One method over the rows given (every list aligned; `pred_pose` entries may be None)."""
    out: dict = {"n": len(pred_lm)}
    if not pred_lm:
        return out
    yaw = np.array(gt_pose, float)[:, 0]
    e68, e51 = _errors(pred_lm, gt_lm)
    out |= {"nme68": binned(e68, yaw), "inner51": binned(e51, yaw)}
    posed = [(p, t) for p, t in zip(pred_pose, gt_pose, strict=True) if p is not None]
    if posed:
        pp, tp = np.array([p for p, _ in posed], float), np.array([t for _, t in posed], float)
        out |= {"pose": pose_mae(pp, tp), "bias": pose_bias(pp, tp)}
    return out


def _accepted_vs_rejected(acc: list[dict], rej: list[dict]) -> dict:
    """NME of accepted rows (their label) and of rejected rows: their pseudo-label where the row
    carries one, else one teacher pass, else one second-source pass (counted by what was used)."""
    out: dict = {}
    a = [r for r in acc if r["pseudo_landmarks"] is not None]
    if a:
        e68, e51 = _errors([r["pseudo_landmarks"] for r in a], [r["landmarks"] for r in a])
        out["accepted"] = {"n": len(a), "nme68": float(e68.mean()), "inner51": float(e51.mean())}
    used: dict[str, int] = {}
    pred, truth = [], []
    for r in rej:
        for col in ("pseudo_landmarks", "single_teacher_landmarks", "single_second_landmarks"):
            if r.get(col) is not None:
                pred.append(r[col])
                truth.append(r["landmarks"])
                used[col] = used.get(col, 0) + 1
                break
        else:
            used["none"] = used.get("none", 0) + 1
    if rej:
        out["rejected"] = {"n": len(rej), "from": used}
        if pred:
            e68, e51 = _errors(pred, truth)
            out["rejected"] |= {"nme68": float(e68.mean()), "inner51": float(e51.mean())}
    return out


def _confidence(acc: list[dict]) -> dict:
    """`fit_error` (the label's expected error, face-size units) against the true NME of the accepted
    labels: Spearman's rank correlation and the keep-the-most-confident table."""
    rows = [r for r in acc if r["pseudo_landmarks"] is not None]
    out: dict = {"column": "fit_error", "n": len(rows)}
    if not rows:
        return out
    e68, e51 = _errors([r["pseudo_landmarks"] for r in rows], [r["landmarks"] for r in rows])
    conf = np.array([np.nan if r.get("fit_error") is None else r["fit_error"] for r in rows], float)
    have = ~np.isnan(conf)
    out["with_value"] = int(have.sum())
    out["spearman_nme68"] = spearman(conf[have], e68[have])
    out["spearman_inner51"] = spearman(conf[have], e51[have])
    out["keep"] = keep_most_confident(conf, {"nme68": e68, "inner51": e51}, KEEP_PERCENTS)
    return out


def label_metrics(table: pa.Table) -> dict:
    """The label report of a landmarks-stage table (its ground-truth rows); ValueError without any."""
    rows = table.filter(pc.equal(table.column("label_kind"), "ground_truth")).to_pylist()
    if not rows:
        raise ValueError(
            "the run has no ground-truth rows (a 300w_lp or aflw2000 source) in the PLTD's jaw style; " + JAW_STYLE_HINT
        )
    acc = [r for r in rows if r.get("pseudo_status") == "accepted"]
    rej = [r for r in rows if r.get("pseudo_status") != "accepted"]
    reasons: dict[str, int] = {}
    for r in rej:
        reasons[str(r.get("pseudo_status"))] = reasons.get(str(r.get("pseudo_status")), 0) + 1
    out: dict = {
        "ground_truth_images": len(rows),
        "accepted": len(acc),
        "accepted_share": len(acc) / len(rows),
        "rejected_by_reason": reasons,
        "faces_per_bin": {k: int(m.sum()) for k, m in yaw_bins([r["pose"][0] for r in rows]).items()},
        "methods": {},
    }
    for name, (lm, pose, accepted_only) in METHODS.items():
        use = [r for r in (acc if accepted_only else rows) if r.get(lm) is not None]
        out["methods"][name] = method_metrics(
            [r[lm] for r in use], [r["landmarks"] for r in use], [r["pose"] for r in use], [r.get(pose) for r in use]
        )
    out["accepted_vs_rejected"] = _accepted_vs_rejected(acc, rej)
    out["confidence"] = _confidence(acc)
    label = out["methods"]["label"]
    if "nme68" in label:  # the headline (the generic report layout reads these two keys)
        out["nme"], out["pose"] = label["nme68"], label.get("pose", {"n": 0, "excluded": 0})
    return out


# ---- Markdown -------------------------------------------------------------------------------


def _f(x, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _bins(b: dict) -> str:
    """'all (0–30 / 30–60 / 60–90; mean of bins)'."""
    return (
        f"{_f(b['all'])} ({_f(b['0-30']['nme'])} / {_f(b['30-60']['nme'])} / {_f(b['60-90']['nme'])}; {_f(b['mean'])})"
    )


def markdown_lines(res: dict) -> list[str]:
    """The report as Markdown tables: landmarks and pose per method, acceptance, confidence."""
    m = res["methods"]
    b = res["faces_per_bin"]
    counts = f" (ground-truth faces per \\|yaw\\| bin: {b['0-30']} / {b['30-60']} / {b['60-90']})"
    lines = [
        f"{res['ground_truth_images']} ground-truth images; accepted {res['accepted']} "
        f"({res['accepted_share'] * 100:.1f} %)"
        + (
            "; rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(res["rejected_by_reason"].items()))
            if res["rejected_by_reason"]
            else ""
        ),
        "",
        "NME % (normaliser: sqrt(w·h) of the ground truth's 68-point box): mean over faces "
        "(\\|yaw\\| ≤ 30 / 30–60 / > 60; mean of the bins)" + counts,
        "",
        "| method | faces | NME68 | inner 51 (points 17–67) |",
        "|---|---|---|---|",
    ]
    for name, v in m.items():
        if "nme68" in v:
            lines.append(f"| {TITLES[name]} | {v['n']} | {_bins(v['nme68'])} | {_bins(v['inner51'])} |")
        else:
            lines.append(f"| {TITLES[name]} | 0 | – | – |")
    lines += [
        "",
        "Pose (degrees) over the faces with all \\|angles\\| ≤ 99°: MAE and mean signed error (bias)",
        "",
        "| method | faces | MAE yaw | pitch | roll | mean | bias yaw | pitch | roll |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in m.items():
        p, bias = v.get("pose"), v.get("bias")
        if p and "mean" in p:
            mae = " | ".join(_f(p[k]) for k in ("yaw", "pitch", "roll", "mean"))
            signed = " | ".join(_f(bias[k], signed=True) for k in ("yaw", "pitch", "roll"))
            lines.append(f"| {TITLES[name]} | {p['n']} | {mae} | {signed} |")
    ar = res.get("accepted_vs_rejected", {})
    if ar:
        lines += ["", "| rows | n | NME68 | inner 51 | label compared |", "|---|---|---|---|---|"]
        if "accepted" in ar:
            a = ar["accepted"]
            lines.append(f"| accepted | {a['n']} | {_f(a['nme68'])} | {_f(a['inner51'])} | pseudo-label |")
        if "rejected" in ar:
            r = ar["rejected"]
            used = ", ".join(f"{k.removesuffix('_landmarks')} {n}" for k, n in r["from"].items())
            lines.append(f"| rejected | {r['n']} | {_f(r.get('nme68'))} | {_f(r.get('inner51'))} | {used} |")
    c = res.get("confidence", {})
    if c.get("keep"):
        lines += [
            "",
            f"Confidence: Spearman's rank correlation of `fit_error` with the true NME68 "
            f"{_f(c['spearman_nme68'])} (inner 51: {_f(c['spearman_inner51'])}; {c['with_value']} accepted labels)",
            "",
            "| keep the most confident (lowest fit_error) | labels | NME68 | inner 51 | fit_error ≤ |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k['percent']} % | {k['n']} | {_f(k['nme68'])} | {_f(k['inner51'])} | {_f(k['threshold'], 4)} |"
            for k in c["keep"]
        ]
    return lines
