"""PnP pose as a cross-check of the label's pose (after YOLOMT's EPnP on keypoints): an independent
solver that flags labels whose pose and landmarks disagree.

OpenCV's `solvePnP` (EPnP for a closed-form start, then its Levenberg–Marquardt refinement,
`SOLVEPNP_ITERATIVE` with the EPnP extrinsics as the guess) of the label's landmarks against the
mean 3D face, with a pinhole camera of focal length `FOCAL_FACTOR` × the image's long side and the
principal point at the image centre: near-orthographic, as the weak-perspective model of
`pltd.pose` and `geometry.fit_pose`, but an independent solver (OpenCV's, not pltd's Gauss–Newton).
Why 100 × and not 10 ×: on weak-perspective projections of the mean face at 45 poses (yaw ±70°,
pitch −30…20°, roll −25…15°, the face half the image wide) the perspective camera alone puts PnP up
to 0.91° (mean 0.51°) from the true rotation at 10 ×, 0.09° (mean 0.05°) at 100 ×; the cross-check
should measure landmarks that disagree with the pose, not the two camera models. ~0.4 ms a row.

Conventions (derived, and tested in tests/stages/landmarks/test_pnp.py): OpenCV's camera frame has
x right, y down, z forward into the scene, and maps a model point X to R_cv·X + t, the pixel being
(f·x/z + c_x, f·y/z + c_y). pltd's model frame (`pltd.pose`) has x right, y up, z toward the camera,
and a point lands at u = t_x + s·(R X)_x, v = t_y − s·(R X)_y. The same image therefore needs
camera x = +(R X)_x, camera y = −(R X)_y, and camera depth growing away from the camera, i.e.
−(R X)_z: R_cv = F·R with F = diag(1, −1, −1) (a rotation by 180° about x, det +1), so
R = F·R_cv (F is its own inverse).

`pose_agreement` is the geodesic angle (`pltd.pose.geodesic_deg`) between the PnP rotation and the
rotation of the label's (yaw, pitch, roll).
"""

from __future__ import annotations

import numpy as np

from pltd.pose import angles, geodesic_deg, rotation
from pltd.stages.landmarks.geometry import RIGID_POINTS

FOCAL_FACTOR = 100.0  # focal length / the image's long side: nearly orthographic (see the docstring)
OPENCV_FROM_PLTD = np.diag([1.0, -1.0, -1.0])  # camera (x right, y down, z forward) from pltd's (y up, z to camera)


def pltd_rotation(rvec: np.ndarray) -> np.ndarray:
    """OpenCV's Rodrigues vector (model → camera) → the rotation in `pltd.pose`'s convention."""
    import cv2

    return OPENCV_FROM_PLTD @ cv2.Rodrigues(np.asarray(rvec, float).reshape(3, 1))[0]


def camera(width: float, height: float) -> np.ndarray:
    """The pinhole camera matrix: f = FOCAL_FACTOR × the long side, principal point at the centre."""
    f = FOCAL_FACTOR * max(width, height)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def pnp_rotation(
    points2d: np.ndarray, model3d: np.ndarray, size: tuple[float, float], use: np.ndarray | None = None
) -> np.ndarray | None:
    """The PnP rotation (pltd's convention) of `model3d` (68×3) seen at `points2d` (68×2 pixels, y down)
    in an image of `size` = (width, height); None when OpenCV finds no solution or it is behind the camera.
    `use`: the points solved for (default the rigid inner points, `geometry.RIGID_POINTS`)."""
    import cv2

    idx = RIGID_POINTS if use is None else np.asarray(use)
    image = np.ascontiguousarray(np.asarray(points2d, float).reshape(-1, 2)[idx])
    model = np.ascontiguousarray(np.asarray(model3d, float).reshape(-1, 3)[idx])
    if not np.isfinite(image).all():
        return None
    k = camera(*size)
    ok, rvec, tvec = cv2.solvePnP(model, image, k, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return None
    ok, rvec, tvec = cv2.solvePnP(
        model, image, k, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok or float(tvec[2, 0]) <= 0:
        return None
    return pltd_rotation(rvec)


def pnp_pose(points2d, model3d, size, use=None) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) of the PnP rotation, or None."""
    r = pnp_rotation(points2d, model3d, size, use)
    return None if r is None else angles(r)


def pose_agreement(points2d, pose, model3d, size, use=None) -> float | None:
    """Degrees between the PnP rotation of `points2d` and the rotation of `pose` (yaw, pitch, roll); None
    when either is missing or PnP fails."""
    if points2d is None or pose is None or not np.isfinite(np.asarray(pose, float)).all():
        return None
    r = pnp_rotation(points2d, model3d, size, use)
    return None if r is None else geodesic_deg(r, rotation(*pose))
