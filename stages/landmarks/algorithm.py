"""Algorithm 1 for one image, given every source's samples on its views (no models, no I/O).

`label_views` is lines 3–33 of the paper's Algorithm 1 (validity, AdjustUpperEyes, selective
fitting, pose); the stage (`stage.py`) runs the sources and the blink network batched over a chunk
of images and calls it once per image. Poses of sources that do not regress one (dlib, FaceMesh)
are fitted batched (`fill_fitted_poses`, `fit_labels`), never one call per sample.

The jaw: 3D-style teachers (3DDFA_V2: `jaw_style = "3d"`) put points 0–16 on fixed vertices,
2D-style sources (dlib, MediaPipe through the index map, 300W-LP's pt2d) on the visible outline.
When both styles are mixed, the spread test and the farthest-sample choice use the inner points
17–67 only (`spread_points`), so that a turned head is not rejected for the styles' disagreement;
the label's jaw is the mean of the kept samples (README "Landmarks: the jaw").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pltd.pose import mean_pose, mirror
from pltd.stages.landmarks.blink import adjust_upper_eyes
from pltd.stages.landmarks.fitting import Fit, Validity, invalid_reason, selective_fit
from pltd.stages.landmarks.fusion import SourceSamples, consensus, restyle_jaw
from pltd.stages.landmarks.geometry import RIGID_POINTS, fit_pose_batch
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.sources import Sample
from pltd.stages.landmarks.views import View

Sigma = tuple[float, float]


@dataclass
class ImageLabel:
    """What Algorithm 1 made of one image: the fit and the per-image details the rows need."""

    fit: Fit
    kinds: list[str]  # "teacher" / "second" per valid sample (indices of fit.kept)
    n_valid: int
    eye_closed: list[float] | None  # mean σ per eye over the views that have one
    pose_agreement: float | None = None  # PnP vs the label's pose, degrees (landmarks.pose_check)
    truth_agreement: float | None = None  # the same for a ground-truth row's own label


def pose_mode(s: LandmarkSettings, teacher) -> str:
    """`pose_from` with "auto" resolved: the teacher's pose only when the teacher regresses one.

    Measured on the real 300W-LP render (yaw −44°) with dlib68 + MediaPipe: dlib's landmarks miss
    at that yaw (NME 0.24) and its fitted pose had the wrong sign (+9° label); the fit of the
    selectively fitted mean landmarks gives −38.5° (and +37.7° on the mirror image).
    """
    if s.pose_from != "auto":
        return s.pose_from
    if s.fusion == "consensus" and not teacher.pose_is_fitted:
        return "blend"
    return "fit" if teacher.pose_is_fitted else "teacher"


def spread_points(s: LandmarkSettings, teacher) -> np.ndarray | None:
    """The points selective fitting compares: inner only when a 3D-style teacher meets a 2D-style second."""
    mixed = teacher.jaw_style == "3d" and s.second != "none"
    return RIGID_POINTS if mixed else None


def fill_fitted_poses(samples: list[Sample | None], mean_face: np.ndarray | None) -> list[Sample | None]:
    """Samples with pose None get the fit of their landmarks, all in one batched fit."""
    todo = [i for i, x in enumerate(samples) if x is not None and x.pose is None]
    if not todo or mean_face is None:
        return samples
    poses = fit_pose_batch(np.stack([samples[i].landmarks for i in todo]), mean_face)[0]
    out = list(samples)
    for i, p in zip(todo, poses, strict=True):
        out[i] = replace(samples[i], pose=tuple(float(a) for a in p))
    return out


def fit_labels(labels: list[ImageLabel], mean_face: np.ndarray, blend: bool = False) -> None:
    """pose_from "fit": the mean face fitted to every accepted label of a chunk in one batched fit (to
    the fusion's `reference_points`, else its `pose_points`, else the label: fusion step 5);
    "blend": the rotation mean of the fit of the `pose_points` (else the label) and the teacher's
    regressed pose already in the label."""
    done = [x.fit for x in labels if x.fit.landmarks is not None]
    if done:
        order = ("pose_points",) if blend else ("reference_points", "pose_points")
        points = [next((getattr(f, k) for k in order if getattr(f, k) is not None), f.landmarks) for f in done]
        poses = fit_pose_batch(np.stack(points), mean_face)[0]
        for f, p in zip(done, poses, strict=True):
            fitted = tuple(float(a) for a in p)
            f.pose = mean_pose(np.array([f.pose, fitted])) if blend and f.pose is not None else fitted


def cross_check_poses(labels: list[ImageLabel], rows: list[dict], sizes: list, s: LandmarkSettings, mean_face) -> None:
    """PnP agreement of every accepted pseudo-label (and of a ground-truth row's own label); with
    `max_pose_disagreement`, a larger angle makes the pseudo-label `pose_disagreement` (ground-truth
    rows keep their label: the reason goes to their audit status). A PnP failure judges nothing."""
    if not s.pose_check and s.max_pose_disagreement is None:
        return
    from pltd.stages.landmarks.pnp import pose_agreement

    for label, row, size in zip(labels, rows, sizes, strict=True):
        f = label.fit
        if row.get("landmarks_gt") is not None:
            label.truth_agreement = pose_agreement(row["landmarks_gt"], row.get("pose_gt"), mean_face, size)
        if f.reason is not None or f.landmarks is None:
            continue
        label.pose_agreement = a = pose_agreement(f.landmarks, f.pose, mean_face, size)
        if s.max_pose_disagreement is not None and a is not None and a > s.max_pose_disagreement:
            f.reason = "pose_disagreement"


def label_views(
    views: list[View],
    teacher: list[Sample | None],
    second: list[Sample | None],
    sigmas: list[Sigma | None],
    s: LandmarkSettings,
    pose_from: str,
    points: np.ndarray | None = None,
    styles: tuple[str, str] = ("2d", "2d"),
    references: tuple[bool, bool] = (False, False),
) -> ImageLabel:
    """Validity per sample, AdjustUpperEyes on the teacher's samples, then the fusion (`s.fusion`):
    the consensus of the sources (`fusion.consensus`) or the paper's selective fitting; source pixels.

    A mirrored view's samples come back through `View.to_source` (flip and iBUG permutation) and its
    regressed pose through `pltd.pose.mirror`. `styles`: the teacher's and the second source's jaw
    styles; only samples of the PLTD's `jaw_style` give the label's jaw points 0–16. `references`:
    whether each is a reference source of the consensus (`LandmarkSource.reference`).
    """
    validity = Validity(s.min_face_fraction, s.min_x_spread)
    pts, poses, kinds, mirrored = [], [], [], []
    # a refining teacher's earlier crop passes (fusion.SourceSamples.earlier; FaceMesh's first pass
    # was tried too and made fit_error a worse predictor: 0.55 rank correlation instead of 0.66)
    earlier = {"teacher": [], "second": []}
    for v, t, sec, sg in zip(views, teacher, second, sigmas, strict=True):
        t_pose = None if t is None or t.pose is None else tuple(mirror(t.pose)) if v.mirrored else t.pose
        if t is not None and invalid_reason(t.landmarks, s.view_size, validity) is None:
            lm = adjust_upper_eyes(t.landmarks, sg) if sg is not None else t.landmarks
            pts.append(v.to_source(lm))
            poses.append(t_pose)
            kinds.append("teacher")
            mirrored.append(v.mirrored)
            earlier["teacher"] += [v.to_source(e) for e in (t.earlier if t.earlier is not None else [])]
        if sec is not None and invalid_reason(sec.landmarks, s.view_size, validity) is None:
            sec_pose = None if sec.pose is None else tuple(mirror(sec.pose)) if v.mirrored else sec.pose
            pts.append(v.to_source(sec.landmarks))
            # teacher / blend: the sample carries its view's teacher pose (as Algorithm 1 appends it)
            poses.append(t_pose if pose_from in ("teacher", "blend") and t_pose is not None else sec_pose)
            kinds.append("second")
            mirrored.append(v.mirrored)
    style_of = {"teacher": styles[0], "second": styles[1]}
    if s.fusion == "consensus":
        groups = [
            SourceSamples(
                np.stack([pts[i] for i in idx]) if idx else np.zeros((0, 68, 2)),
                np.array([mirrored[i] for i in idx], bool),
                style_of[kind],
                np.stack(earlier[kind]) if earlier[kind] else None,
                ref,
                len(views) - len(idx) if configured else 0,  # views without a valid sample
            )
            for kind, ref, configured in zip(("teacher", "second"), references, (True, s.second != "none"), strict=True)
            for idx in [[i for i, k in enumerate(kinds) if k == kind]]
        ]
        fit = consensus(groups, s.jaw_style, s.t_d, s.min_samples)
        if fit.landmarks is not None and pose_from in ("teacher", "blend", "own"):
            # teacher / blend: the teacher's regressed poses; own: every sample's own pose (fitted ones too)
            given = [
                p for p, k in zip(poses, kinds, strict=True) if p is not None and (pose_from == "own" or k == "teacher")
            ]
            fit.pose = mean_pose(np.array(given)) if given else None  # over views and mirrors
        kinds = sorted(kinds, key=("teacher", "second").index)  # fit.kept indexes the samples by source
    else:
        if pose_from == "fit":
            poses = [None] * len(pts)  # the accepted mean landmarks are fitted once (`fit_labels`)
        fit = selective_fit(pts, poses, s.t_d, s.keep, s.min_samples, points)
        fit = restyle_jaw(fit, pts, [style_of[k] for k in kinds], s.jaw_style)
    # a mirrored view's eye 0 is the image's eye 1
    given = [(x[::-1] if v.mirrored else x) for v, x in zip(views, sigmas, strict=True) if x is not None]
    return ImageLabel(fit, kinds, len(pts), np.mean(given, axis=0).tolist() if given else None)
