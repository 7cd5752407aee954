"""`pltd eval labels`: a run's pseudo-labels against the ground truth its sources carry."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pltd.trainer.evaluation.metrics import pose_mae, yaw_binned_nme

METHODS = {
    "selective_fitting": ("pseudo_landmarks", "pseudo_pose"),
    "single_teacher": ("single_teacher_landmarks", "single_teacher_pose"),
    "single_second": ("single_second_landmarks", "single_second_pose"),
}


def label_metrics(table: pa.Table) -> dict:
    rows = table.filter(pc.equal(table.column("label_kind"), "ground_truth")).to_pylist()
    if not rows:
        raise ValueError("the run has no ground-truth rows (a 300w_lp or aflw2000 source)")
    out: dict = {"ground_truth_images": len(rows)}
    for name, (lm, pose) in METHODS.items():
        use = [
            r for r in rows if r[lm] is not None and (name != "selective_fitting" or r["pseudo_status"] == "accepted")
        ]
        if not use:
            continue
        gt_pose = np.array([r["pose"] for r in use])
        res = {
            "nme": yaw_binned_nme(
                np.array([r[lm] for r in use]), np.array([r["landmarks"] for r in use]), gt_pose[:, 0]
            )
        }
        with_pose = [r for r in use if r[pose] is not None]
        if with_pose:
            res["pose"] = pose_mae(np.array([r[pose] for r in with_pose]), np.array([r["pose"] for r in with_pose]))
        out[name] = res
    # the report writer shows the selective-fitting row as the main table
    if "selective_fitting" in out:
        out["nme"], out["pose"] = (
            out["selective_fitting"]["nme"],
            out["selective_fitting"].get("pose", {"n": 0, "excluded": 0}),
        )
    return out
