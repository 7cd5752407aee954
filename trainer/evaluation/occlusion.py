"""Synthetic-occlusion robustness on AFLW2000-3D, in the style of LPONet's AFLW2000-SO: the same
protocol (`protocols.aflw2000`: crops around the ground-truth points × 1.4, pose MAE, NME by yaw
bin, failure rate, AUC) once on the clean crops and once with a random occluder pasted over each
face, reported side by side.

Occluder (a choice; LPONet pastes object cut-outs, which pltd does not ship): one axis-aligned
rectangle per face whose side is 25–50 % of the face box's side (random aspect), centred at a
uniform point of the face box, filled either with uniform noise or with one random colour (even
odds). The draws are a function of `seed` and the image order, so a rerun occludes the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pltd.trainer.evaluation.protocols import aflw2000

CROP_SCALE = 1.4  # protocols.face_crops: the crop's side over the face box's side


def occlude(images: np.ndarray, rng: np.random.Generator, min_side: float = 0.25, max_side: float = 0.5,
            scale: float = CROP_SCALE) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """N × S × S × 3 uint8 face crops (face box centred, side S/scale) → occluded copies and the
    N × 4 rectangles (x0, y0, x1, y1) pasted, in pixels."""
    out = images.copy()
    n, s = len(images), images.shape[1]
    face = s / scale
    lo = (s - face) / 2
    rects = np.zeros((n, 4), int)
    for i in range(n):
        w, h = face * rng.uniform(min_side, max_side, size=2)
        cx, cy = lo + face * rng.uniform(0, 1, size=2)
        x0, y0 = int(round(max(cx - w / 2, 0))), int(round(max(cy - h / 2, 0)))
        x1, y1 = int(round(min(cx + w / 2, s))), int(round(min(cy + h / 2, s)))
        if rng.random() < 0.5:
            out[i, y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
        else:
            out[i, y0:y1, x0:x1] = rng.integers(0, 256, 3, dtype=np.uint8)
        rects[i] = x0, y0, x1, y1
    return out, rects


class Occluded:
    """An evaluation model whose inputs each get an occluder before the wrapped model sees them."""

    def __init__(self, model, seed: int = 0):
        self.model, self.size, self.seed = model, model.size, seed

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        occluded, _ = occlude(np.asarray(images), np.random.default_rng(self.seed))
        return self.model(occluded)


def aflw2000_occlusion(model, root: str | Path, seed: int = 0) -> dict:
    """{"clean": AFLW2000 report, "occluded": the same with occluders, "change": occluded − clean
    for the headline numbers (pose MAE mean, NME mean of bins, failure rate at 0.10)}."""
    clean, occluded = aflw2000(model, root), aflw2000(Occluded(model, seed), root)
    change = {}
    for name, get in (("pose_mae", lambda r: r["pose"]["mean"]), ("nme", lambda r: r["nme"]["mean"]),
                      ("failure_rate_0.1", lambda r: r["failure_rate"]["0.1"])):  # fmt: skip
        try:
            change[name] = get(occluded) - get(clean)
        except (KeyError, TypeError):  # the model has no such output
            continue
    return {"clean": clean, "occluded": occluded, "change": change, "occluder_seed": seed}
