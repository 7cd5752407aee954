"""Datasets annotated with `.mat` files beside the images: 300W-LP and AFLW2000-3D.

Each `<stem>.jpg` has `<stem>.mat` with `Pose_Para` (1x7: pitch, yaw, roll in radians, then tx, ty,
tz, scale) and landmarks: 300W-LP `pt2d` (2x68), AFLW2000-3D `pt3d_68` (3x68; its `pt2d` has only
21 points). Angles become degrees, reordered to (yaw, pitch, roll) — the README states the sign
convention. 300W-LP renders each base photo several times (`AFW_134212_1_0..17`, and `*_Flip`
folders); `base_id` names that photo so a later stage can give each one a single identity.
"""

from __future__ import annotations

import io
import posixpath
import re

import numpy as np
import pyarrow as pa

from pltd.schemas import image_id
from pltd.stages.problems import RowProblem
from pltd.stages.readers.base import PlanStats, Reader, Source, plan_table, register
from pltd.stages.readers.rows import Rows, verify_image

_RENDER_SUFFIX = re.compile(r"_\d+$")


class AnnotationProblem(RowProblem):
    """A `.mat` annotation that is absent, damaged or incomplete."""


def pose_from_para(pose_para: np.ndarray) -> list[float]:
    """Pose_Para (pitch, yaw, roll, … in radians) → [yaw, pitch, roll] in degrees."""
    p = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    if p.size < 3 or not np.all(np.isfinite(p[:3])):
        raise AnnotationProblem("annotation_bad_value", f"Pose_Para has {p.size} values or non-finite angles")
    pitch, yaw, roll = np.degrees(p[:3])
    return [float(yaw), float(pitch), float(roll)]


def landmarks_from(mat: dict, key: str) -> list[float]:
    """A 2xN or 3xN (or Nx2/Nx3) point array → 68 points flattened as x0, y0, x1, y1, …"""
    pts = np.asarray(mat[key], dtype=np.float64)
    if pts.ndim != 2 or 68 not in pts.shape:
        raise AnnotationProblem("annotation_bad_value", f"{key} has shape {pts.shape}, expected 68 points")
    if pts.shape[1] != 68:
        pts = pts.T
    xy = pts[:2].T
    if not np.all(np.isfinite(xy)):
        raise AnnotationProblem("annotation_bad_value", f"{key} has non-finite coordinates")
    return xy.reshape(-1).astype(np.float32).tolist()


def load_mat(data: bytes, fields: tuple[str, ...]) -> dict:
    import scipy.io  # ~0.5 s to import: on the first .mat read, not when a manifest is validated

    try:
        mat = scipy.io.loadmat(io.BytesIO(data))
    except Exception as exc:  # scipy raises many types for a damaged file
        raise AnnotationProblem("annotation_unreadable", f"{type(exc).__name__}: {exc}") from exc
    missing = [f for f in fields if f not in mat]
    if missing:
        raise AnnotationProblem("annotation_missing_field", f"missing {', '.join(missing)}")
    return mat


def base_photo(rel: str) -> str:
    """300W-LP render path → its base photo: `AFW_Flip/AFW_134212_1_3.jpg` → `AFW_134212_1`."""
    stem = posixpath.splitext(posixpath.basename(rel))[0]
    return _RENDER_SUFFIX.sub("", stem)


class MatReader(Reader):
    """Images with a same-stem `.mat`; subclasses name the landmark field."""

    landmark_field: str
    jaw_style: str  # "2d" or "3d": the style of `landmark_field`'s jaw points 0–16

    companions = (".mat",)

    def plan_listed(self, source: Source, rels: list[str], stats: PlanStats, context: dict) -> pa.Table:
        kept = []
        for rel in rels:
            if rel.split("/")[0] == "landmarks":  # 300W-LP's separate landmark folder: not images to label
                stats.ignore("landmarks_folder", rel)
            else:
                kept.append(rel)
        return plan_table(kept, [self.label_of(rel) for rel in kept])

    def label_of(self, rel: str) -> str | None:
        return None

    def other_style(self, fs, root: str, rel: str, width: int) -> list[float] | None:
        """The ground truth in the other jaw style, where the dataset has it (default: none)."""
        return None

    def read(self, source: Source, plan: pa.Table, settings) -> tuple[pa.Table, pa.Table]:
        fs, root = source.fs()
        rows = Rows(source)
        fields = ("Pose_Para", self.landmark_field)
        for rel, label in zip(plan.column("item").to_pylist(), plan.column("label").to_pylist(), strict=True):
            iid, url = image_id(source.name, rel), source.url(rel)
            mat_path = posixpath.join(root, posixpath.splitext(rel)[0] + ".mat")
            try:
                with fs.open(posixpath.join(root, rel), "rb") as f:
                    data = f.read()
                header = verify_image(data, settings)
                if not fs.exists(mat_path):
                    raise AnnotationProblem("annotation_missing", f"no {posixpath.basename(mat_path)} beside the image")
                with fs.open(mat_path, "rb") as f:
                    mat = load_mat(f.read(), fields)
                pose = pose_from_para(mat["Pose_Para"])
                landmarks = landmarks_from(mat, self.landmark_field)
                other = self.other_style(fs, root, rel, header.width)
            except RowProblem as exc:
                rows.reject(iid, exc.reason, exc.detail, url)
                continue
            except OSError as exc:
                rows.reject(iid, "unreadable_file", str(exc), url)
                continue
            xy = np.asarray(landmarks).reshape(-1, 2)
            rows.accept_image(
                iid,
                url,
                len(data),
                header,
                source_label=label,
                offset=0,
                bbox=[*xy.min(axis=0).tolist(), *xy.max(axis=0).tolist()],  # tight landmark box
                landmarks_gt=landmarks,
                landmarks_gt_style=self.jaw_style,
                landmarks_gt_other=other,
                pose_gt=pose,
                base_id=label if self.format == "300w_lp" else None,
            )
        return rows.tables()


@register
class W300LPReader(MatReader):
    format = "300w_lp"
    landmark_field = "pt2d"
    jaw_style = "2d"  # pt2d: the jaw on the visible outline

    def label_of(self, rel: str) -> str:
        return base_photo(rel)

    def other_style(self, fs, root: str, rel: str, width: int) -> list[float] | None:
        """3D-style ground truth: `landmarks/<SUBSET>/<stem>_pts.mat`, field `pts_3d` (68 × 2), as 300W-LP
        ships it for the unflipped renders; a `<SUBSET>_Flip` render gets the mirror of its unflipped
        twin (x → width − x, the iBUG permutation). None when the file or its pts_3d is not there."""
        folder, name = posixpath.split(rel)
        subset = posixpath.basename(folder)
        flipped = subset.endswith("_Flip")
        stem = posixpath.splitext(name)[0]
        path = posixpath.join(root, "landmarks", subset.removesuffix("_Flip"), f"{stem}_pts.mat")
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            mat = load_mat(f.read(), ())  # a damaged file rejects the row (annotation_unreadable)
        if "pts_3d" not in mat:
            return None
        pts = np.asarray(landmarks_from(mat, "pts_3d")).reshape(68, 2)
        if flipped:
            from pltd.stages.landmarks.ibug import mirror_landmarks

            pts = mirror_landmarks(pts, width)
        return pts.reshape(-1).astype(np.float32).tolist()


@register
class AFLW2000Reader(MatReader):
    format = "aflw2000"
    landmark_field = "pt3d_68"
    jaw_style = "3d"  # pt3d_68: the fitted 3D face's jaw, projected
