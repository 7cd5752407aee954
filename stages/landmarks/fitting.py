"""Validity checks and selective fitting (Algorithm 1, lines 10–33)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pltd.pose import mean_pose
from pltd.stages.landmarks.geometry import face_size


@dataclass(frozen=True)
class Validity:
    min_face_fraction: float = 0.1  # landmark box side below this fraction of the view: "abnormally small"
    min_x_spread: float = 0.03  # std of x below this fraction of the view: "clustered at the centre"
    max_outside: float = 0.25  # fraction of points outside the view


def invalid_reason(pts: np.ndarray, view_size: int, v: Validity) -> str | None:
    """Why a view's 68 points are not a usable sample, or None when they are."""
    pts = np.asarray(pts, float).reshape(68, 2)
    if not np.all(np.isfinite(pts)):
        return "non_finite"
    w, h = pts.max(axis=0) - pts.min(axis=0)
    if min(w, h) < v.min_face_fraction * view_size:
        return "too_small"
    if pts[:, 0].std() < v.min_x_spread * view_size:
        return "x_clustered"
    outside = np.mean((pts < -0.05 * view_size).any(axis=1) | (pts > 1.05 * view_size).any(axis=1))
    if outside > v.max_outside:
        return "outside_view"
    return None


@dataclass
class Fit:
    landmarks: np.ndarray | None  # 68 x 2 in source pixels, None when rejected
    pose: tuple[float, float, float] | None
    kept: list[int]  # indices into the samples
    fit_error: float  # mean over kept samples of their mean point distance to the mean / face size
    max_distance: float
    reason: str | None  # rejection reason
    # the points the pose fit reads when they are not the label (fusion.consensus, step 5): for `blend`,
    # the sources weighted by their mirror tests alone (evidence less tied to the teacher whose pose the
    # blend already holds); for `fit`, the reference sources' estimate (points in the mean face's frame)
    pose_points: np.ndarray | None = None
    reference_points: np.ndarray | None = None


def sample_distances(samples: np.ndarray, mean: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
    """Mean point-to-point distance of each sample to `mean` over `points` (default all 68), divided
    by the mean's face size (of all 68 points)."""
    sel = slice(None) if points is None else points
    return np.linalg.norm(samples[:, sel] - mean[None, sel], axis=2).mean(axis=1) / face_size(mean)


Pose = tuple[float, float, float]


def selective_fit(
    landmarks: list[np.ndarray],
    poses: list[Pose | None],
    t_d: float = 0.05,
    keep: int = 3,
    min_samples: int = 3,
    points: np.ndarray | None = None,
) -> Fit:
    """Drop the farthest sample from the mean while more than `keep` remain; accept the mean if all are within t_d.

    `points`: the landmark indices the distances use (default all 68; the inner points 17–67 when
    3D-style and 2D-style jaws are mixed, `algorithm.spread_points`). The pose is the mean of the
    kept samples' poses that are not None.
    """
    if len(landmarks) < min_samples:
        return Fit(None, None, [], float("nan"), float("nan"), "too_few_valid_samples")
    pts = np.stack([np.asarray(p, float).reshape(68, 2) for p in landmarks])
    kept = list(range(len(pts)))
    while len(kept) > keep:
        d = sample_distances(pts[kept], pts[kept].mean(axis=0), points)
        kept.pop(int(d.argmax()))
    mean = pts[kept].mean(axis=0)
    d = sample_distances(pts[kept], mean, points)
    if d.max() > t_d:
        return Fit(None, None, kept, float(d.mean()), float(d.max()), "fit_spread_above_td")
    kept_poses = [poses[i] for i in kept if poses[i] is not None]
    pose = mean_pose(np.array(kept_poses)) if kept_poses else None
    return Fit(mean, pose, kept, float(d.mean()), float(d.max()), None)
