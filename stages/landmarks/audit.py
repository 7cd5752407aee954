"""Label audit: pseudo-labels against ground truth where the input has it (300W-LP, AFLW2000-3D).

NME = mean point distance / sqrt(w·h) of the ground-truth 68-point box (3DDFA protocol); pose MAE
in degrees per axis, with yaw wrapped to ±180°. Reported for Algorithm 1 on all images it accepted,
and for a single pass (view 0) of each source on the same images and on all images.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pltd.stages.landmarks.geometry import nme

AGREEMENT_SPLIT = 10.0  # degrees: the audit splits checked pseudo-labels at this PnP disagreement


def _wrap(d: np.ndarray) -> np.ndarray:
    return (d + 180.0) % 360.0 - 180.0


def _metrics(pred_lm, pred_pose, gt_lm, gt_pose) -> dict:
    rows = [(p, t) for p, t in zip(pred_lm, gt_lm, strict=True) if p is not None]
    out: dict = {"n": len(rows)}
    if rows:
        out["nme"] = float(np.mean([nme(p, t) for p, t in rows]))
    poses = [(p, t) for p, t in zip(pred_pose, gt_pose, strict=True) if p is not None]
    if poses:
        err = np.abs(_wrap(np.array([p for p, _ in poses]) - np.array([t for _, t in poses])))
        out |= {
            "mae_yaw": float(err[:, 0].mean()),
            "mae_pitch": float(err[:, 1].mean()),
            "mae_roll": float(err[:, 2].mean()),
        }
        out["mae_mean"] = float(err.mean())
    return out


def audit(table: pa.Table) -> dict:
    """Metrics per method over the ground-truth rows of a landmarks-stage table."""
    gt = table.filter(pa.compute.equal(table.column("label_kind"), "ground_truth")).to_pylist()
    if not gt:
        return {"images": 0}
    acc = [r for r in gt if r["pseudo_status"] == "accepted"]
    report = {"images": len(gt), "accepted": len(acc), "rejected_by_reason": {}}
    for r in gt:
        if r["pseudo_status"] != "accepted":
            report["rejected_by_reason"][r["pseudo_status"]] = (
                report["rejected_by_reason"].get(r["pseudo_status"], 0) + 1
            )
    methods = {
        "algorithm1": ("pseudo_landmarks", "pseudo_pose"),
        "single_teacher": ("single_teacher_landmarks", "single_teacher_pose"),
        "single_second": ("single_second_landmarks", "single_second_pose"),
    }
    report |= agreement_split(gt)
    for subset, rows in (("accepted", acc), ("all", gt)):
        for name, (lm, pose) in methods.items():
            if name == "algorithm1" and subset == "all":
                continue  # only accepted images have a selective-fitting label
            report[f"{subset}/{name}"] = _metrics(
                [r[lm] for r in rows],
                [r[pose] for r in rows],
                [r["landmarks"] for r in rows],
                [r["pose"] for r in rows],
            )
    return report


def agreement_split(gt: list[dict], threshold: float = AGREEMENT_SPLIT) -> dict:
    """The pseudo-labels' error where PnP agrees with their pose (≤ threshold degrees) and where it does
    not (landmarks.pose_check): does a large disagreement point at a worse label? Empty when unchecked."""
    rows = [r for r in gt if r.get("pseudo_pose_agreement") is not None and r.get("pseudo_landmarks") is not None]
    if not rows:
        return {}
    out = {}
    for name, part in (
        (f"pose_agreement<={threshold:g}", [r for r in rows if r["pseudo_pose_agreement"] <= threshold]),
        (f"pose_agreement>{threshold:g}", [r for r in rows if r["pseudo_pose_agreement"] > threshold]),
    ):
        out[f"checked/{name}"] = _metrics(
            [r["pseudo_landmarks"] for r in part],
            [r["pseudo_pose"] for r in part],
            [r["landmarks"] for r in part],
            [r["pose"] for r in part],
        )
    truth = [r["pose_agreement"] for r in gt if r.get("pose_agreement") is not None]
    if truth:  # the ground truth's own landmarks against its own pose: how well the mean face explains it
        above = float(np.mean(np.array(truth) > threshold))
        out["ground_truth_pose_agreement"] = {"rows": len(truth), "median": float(np.median(truth)),
                                              f"share_above_{threshold:g}": above}  # fmt: skip
    return out


def format_audit(report: dict) -> list[str]:
    if not report.get("images"):
        return ["label audit: no ground-truth rows in the PLTD's jaw style (landmarks.jaw_style)"]
    if report.get("reference") == "synthetic":
        lines = [
            f"label audit on {report['images']} reference images ({report['accepted']} accepted by Algorithm 1) — "
            "the embedded sample's 300W-LP part: points made by dlib and MediaPipe, pose 0 assumed; a plumbing "
            "check, not an accuracy figure (measured quality: docs/labels.md)"
        ]
    else:
        n, accepted = report["images"], report["accepted"]
        lines = [f"label audit on {n} ground-truth images ({accepted} accepted by Algorithm 1)"]
    for key, m in report.items():
        if isinstance(m, dict) and "n" in m:
            pose = (
                f", pose MAE {m['mae_mean']:.2f}° (y {m['mae_yaw']:.2f} p {m['mae_pitch']:.2f} r {m['mae_roll']:.2f})"
                if "mae_mean" in m
                else ""
            )
            lines.append(f"  {key:<28} n={m['n']:<5} NME {m.get('nme', float('nan')):.4f}{pose}")
    truth = report.get("ground_truth_pose_agreement")
    if truth:
        share = next(v for k, v in truth.items() if k.startswith("share_above_"))
        lines.append(f"  ground truth's own PnP agreement: median {truth['median']:.1f}°, {share:.0%} above "
                     f"{AGREEMENT_SPLIT:g}° (n={truth['rows']})")  # fmt: skip
    return lines
