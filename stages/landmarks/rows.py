"""The landmarks stage's two output row shapes: a pseudo-label, and a ground-truth row with its audit."""

from __future__ import annotations

import numpy as np

from pltd.stages.landmarks.algorithm import ImageLabel
from pltd.stages.landmarks.sources import Sample
from pltd.stages.landmarks.views import View


def flat(a) -> list[float] | None:
    return None if a is None else np.asarray(a, float).reshape(-1).tolist()


def rejection_detail(label: ImageLabel, t_d: float) -> str:
    f = label.fit
    spread = f", max distance {f.max_distance:.3f} > t_d {t_d}" if f.reason == "fit_spread_above_td" else ""
    if f.reason == "fit_error_above_td":
        spread = f", expected error {f.fit_error:.3f} > t_d {t_d}"
    if f.reason == "no_jaw_source":
        spread = ", none from a source of the PLTD's jaw style"
    if f.reason == "pose_disagreement":
        spread = f", PnP rotation {label.pose_agreement:.1f}° from the label's pose"
    return f"{label.n_valid} valid samples{spread}"


def truth_in_style(row: dict, jaw_style: str) -> list[float] | None:
    """The row's ground-truth 68 points in the PLTD's jaw style, or None: no ground truth, or none in
    that style (300W-LP without its `landmarks/` folder in a 3D-style PLTD; AFLW2000-3D in a 2D-style
    one) — such a row is pseudo-labelled like any other, so that every label of a PLTD has one style."""
    if row.get("landmarks_gt") is None:
        return None
    native = row.get("landmarks_gt_style")
    if native is None or native == jaw_style:  # None: an ingest written before styles were recorded
        return row["landmarks_gt"]
    return row.get("landmarks_gt_other")


def label_row(row: dict, label: ImageLabel, box: np.ndarray, truth: list[float] | None = None) -> dict:
    """A LANDMARKS row: the pseudo-label, or the dataset's own label (`truth`) for a ground-truth row."""
    fit, gt = label.fit, truth is not None
    kept = [label.kinds[i] for i in fit.kept] if fit.reason is None else []
    return {
        "image_id": row["image_id"],
        "source": row["source"],
        "label_kind": "ground_truth" if gt else "pseudo",
        "landmarks": truth if gt else flat(fit.landmarks),
        "pose": row["pose_gt"] if gt else list(fit.pose) if fit.pose else None,
        "n_samples": len(kept),
        "n_teacher": kept.count("teacher"),
        "n_second": kept.count("second"),
        "n_valid": label.n_valid,
        "fit_error": None if np.isnan(fit.fit_error) else fit.fit_error,
        "eye_closed": label.eye_closed,
        "face_box": flat(box),
        "pose_agreement": label.truth_agreement if gt else label.pose_agreement,
    }


def audit_columns(label: ImageLabel, view0: View, teacher0: Sample | None, second0: Sample | None) -> dict:
    """What a ground-truth row adds for the audit: the pseudo-label and one pass of each source on view 0."""
    fit = label.fit

    def single(x: Sample | None):
        if x is None:
            return None, None
        return flat(view0.to_source(x.landmarks)), list(x.pose) if x.pose is not None else None

    (tl, tp), (sl, sp) = single(teacher0), single(second0)
    return {
        "pseudo_status": fit.reason or "accepted",
        "pseudo_landmarks": flat(fit.landmarks),
        "pseudo_pose": list(fit.pose) if fit.pose else None,
        "single_teacher_landmarks": tl,
        "single_teacher_pose": tp,
        "single_second_landmarks": sl,
        "single_second_pose": sp,
        "pseudo_pose_agreement": label.pose_agreement,
    }
