"""Pose fitting before and after the convention fix, side by side in one run.

1. Time per fit: the 0.1.0 fit (scipy `least_squares`, numeric Jacobian, all 68 points, the old
   Rz·Ry·Rx convention; copied below as the baseline) vs `geometry.fit_pose` (closed-form start +
   Gauss–Newton, analytic Jacobian). Target ≥ 10× faster.
2. Accuracy on 3D-style ground truth: BFM faces rendered by 300W-LP's formula at known poses.
3. Pose zero on the embedded sample's near-frontal photos (VGGFace2 + MS1MV3 parts, dlib's 68
   points on one view each): median pitch with the 0.1.0 fit + mean face vs now.

    python benchmarks/pose_fit.py [--sample DIR] [--old-mean-face FILE]

Without --old-mean-face the 0.1.0 mean face is read with `git show f0e7dd0:stages/data/mean_face_68.json`.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from pltd.pose import project, rotation
from pltd.stages.landmarks.bfm import keypoint_bases, parameter_statistics
from pltd.stages.landmarks.geometry import fit_pose
from pltd.stages.landmarks.mean_face import load_mean_face


def old_fit_pose(points2d: np.ndarray, model3d: np.ndarray):
    """pltd 0.1.0's fit (stages/landmarks/geometry.py at f0e7dd0), R = Rz·Ry·Rx applied to points."""

    def proj(m, r, s, t):
        p = m @ r.T
        return np.stack([t[0] + s * p[:, 0], t[1] - s * p[:, 1]], axis=1)

    x, m = np.asarray(points2d, float), np.asarray(model3d, float)
    mc, xc = m - m.mean(axis=0), x - x.mean(axis=0)
    xc[:, 1] *= -1
    a, *_ = np.linalg.lstsq(mc, xc, rcond=None)
    r12 = a.T
    s0 = (np.linalg.norm(r12[0]) + np.linalg.norm(r12[1])) / 2
    r3 = np.cross(r12[0], r12[1])
    u, _, vt = np.linalg.svd(np.vstack([r12 / s0, r3 / max(np.linalg.norm(r3), 1e-12)]))
    r0 = u @ vt
    if np.linalg.det(r0) < 0:
        r0 = u @ np.diag([1, 1, -1]) @ vt

    def residual(p):
        return (proj(m, Rotation.from_rotvec(p[:3]).as_matrix(), p[3], p[4:6]) - x).ravel()

    t0 = x.mean(axis=0) - proj(m.mean(axis=0, keepdims=True), r0, s0, np.zeros(2))[0]
    sol = least_squares(residual, np.concatenate([Rotation.from_matrix(r0).as_rotvec(), [s0], t0]), method="lm")
    roll, yaw, pitch = Rotation.from_rotvec(sol.x[:3]).as_euler("ZYX", degrees=True)
    return (yaw, pitch, roll), sol.x[3]


def renders(n_max: int = 10**9):
    mean, shp, exp = keypoint_bases()
    st = parameter_statistics()
    rng = np.random.default_rng(0)
    grid = itertools.product(range(-80, 81, 10), (-30, -15, 0, 15, 30), (-20, 0, 20))
    for k, (yaw, pitch, roll) in enumerate(grid):
        if k >= n_max:
            return
        x3 = mean + shp @ rng.normal(st["shape_mean"], st["shape_std"])
        x3 = x3 + exp @ rng.normal(st["expression_mean"], st["expression_std"])
        yield (
            (yaw, pitch, roll),
            project(x3, rotation(yaw, pitch, roll), 1.1e-3, (225, 225)) + rng.normal(0, 0.5, (68, 2)),
        )


def old_mean_face(path: str | None) -> np.ndarray | None:
    try:
        text = Path(path).read_text() if path else subprocess.run(
            ["git", "show", "f0e7dd0:stages/data/mean_face_68.json"], capture_output=True, text=True, check=True
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return np.asarray(json.loads(text)["points"], float)


def sample_faces(root: Path, limit: int = 200):
    """(image, box) of the sample's VGGFace2 folders and MS1MV3 records."""
    from pltd.stages.recordio import read_idx, read_record, unpack

    boxes = {}
    csv = root / "vggface2" / "bb_landmark" / "loose_bb_train.csv"
    for line in csv.read_text().splitlines()[1:]:
        name, x, y, w, h = line.split(",")
        x, y, w, h = (float(v) for v in (x, y, w, h))
        boxes[name.strip('"')] = np.array([x, y, x + w, y + h])
    out = []
    for f in sorted((root / "vggface2" / "train").glob("*/*.jpg")):
        key = f"{f.parent.name}/{f.stem}"
        if key in boxes:
            out.append((np.asarray(Image.open(f).convert("RGB")), boxes[key]))
    rec = root / "ms1mv3" / "train.rec"
    with open(rec, "rb") as fh:
        size = rec.stat().st_size
        for _, offset in read_idx((root / "ms1mv3" / "train.idx").read_text())[1:]:
            try:
                _, payload = unpack(read_record(fh, offset, size))
                img = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
            except Exception:
                continue  # the sample's deliberately broken records
            h, w = img.shape[:2]
            out.append((img, np.array([0.15 * w, 0.15 * h, 0.85 * w, 0.85 * h])))
    return out[:limit]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", default=None, help="sample dir (default: written with `pltd sample`)")
    ap.add_argument("--old-mean-face", default=None)
    args = ap.parse_args()
    face, old_face = load_mean_face(), old_mean_face(args.old_mean_face)

    data = list(renders())
    for name, fn, model in (("0.1.0 scipy LM", old_fit_pose, old_face if old_face is not None else face),
                            ("now closed-form + Gauss-Newton", fit_pose, face)):  # fmt: skip
        t = time.perf_counter()
        for _, pts in data:
            fn(pts, model)
        per = (time.perf_counter() - t) / len(data) * 1e6
        print(f"fit time  {name:<32} {per:8.0f} µs/fit")
        if name.startswith("0.1.0"):
            base = per
    print(f"fit time  ratio old/new {base / per:.1f}x (target >= 10x)")

    truth = np.array([p for p, _ in data], float)
    new = np.array([fit_pose(pts, face)[0] for _, pts in data]) - truth
    print(f"BFM renders (n={len(data)}): new signed error {new.mean(0).round(2)} MAE {np.abs(new).mean(0).round(2)}")
    if old_face is not None:
        old = np.array([old_fit_pose(pts, old_face)[0] for _, pts in data]) - truth
        print(f"BFM renders: 0.1.0 signed error {old.mean(0).round(2)} MAE {np.abs(old).mean(0).round(2)}")

    from pltd.pipeline.sample import make_sample
    from pltd.stages.landmarks.sources import create_source
    from pltd.stages.landmarks.views import make_views

    root = Path(args.sample) if args.sample else make_sample(Path("/tmp/pltd-bench-sample"))
    dlib = create_source("dlib68", mean_face=None)
    rows_new, rows_old = [], []
    for img, box in sample_faces(root):
        view = make_views(img, box, 1, 256, seed=0)[0]
        smp = dlib([view])[0]
        if smp is None:
            continue
        pts = view.to_source(smp.landmarks)
        rows_new.append(fit_pose(pts, face)[0])
        if old_face is not None:
            rows_old.append(old_fit_pose(pts, old_face)[0])
    rows_new = np.array(rows_new)
    print(f"sample near-frontal photos (n={len(rows_new)}), median (yaw, pitch, roll):")
    if rows_old:
        print(
            f"  0.1.0: {np.median(np.array(rows_old), axis=0).round(1)}  (0.1.0 convention: yaw, roll signs inverted)"
        )
    print(f"  now:   {np.median(rows_new, axis=0).round(1)}")


if __name__ == "__main__":
    main()
