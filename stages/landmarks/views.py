"""The augmentation set A of Algorithm 1: N square views of the face region, seeded by image id.

A view is a square crop of the image around a box derived from the face box (tight, loose,
shifted, padded — the crop may extend past the image, which is then padded with black), resized to
`size` pixels. Each view keeps the affine map back to source pixels, so every sample returns to the
original image's coordinates.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from pltd.stages.landmarks.ibug import MIRROR68

# (scale of the face box side, shift x, shift y as fractions of that side) for the fixed views;
# views beyond these are drawn at random from the same ranges.
FIXED = [(1.3, 0.0, 0.0), (1.1, 0.0, 0.0), (1.6, 0.0, 0.0), (1.3, 0.08, 0.0), (1.3, -0.08, 0.0),
         (1.3, 0.0, 0.08), (1.3, 0.0, -0.08), (2.0, 0.0, 0.0)]  # fmt: skip


@dataclass(frozen=True)
class View:
    image: np.ndarray  # size x size x 3 uint8
    x0: float  # source-pixel corner of the crop
    y0: float
    scale: float  # view pixels per source pixel
    face: tuple[float, float, float, float]  # the (shifted) face box in view pixels
    # the mirror image of the crop: a source's 68 points on it come back through x → size − x and
    # the iBUG permutation (point k of a mirrored face is point MIRROR68[k] of the original)
    mirrored: bool = False

    def to_source(self, pts: np.ndarray) -> np.ndarray:
        """Points in this view's pixels → source pixels (a mirrored view's 68 points also re-ordered)."""
        pts = np.asarray(pts, float).reshape(-1, 2)
        if self.mirrored:
            pts = np.column_stack([self.image.shape[1] - pts[:, 0], pts[:, 1]])
            if len(pts) == 68:
                pts = pts[MIRROR68]
        return pts / self.scale + [self.x0, self.y0]

    def to_view(self, pts: np.ndarray) -> np.ndarray:
        pts = (np.asarray(pts, float).reshape(-1, 2) - [self.x0, self.y0]) * self.scale
        if self.mirrored:
            pts = np.column_stack([self.image.shape[1] - pts[:, 0], pts[:, 1]])
            if len(pts) == 68:
                pts = pts[MIRROR68]  # MIRROR68 is its own inverse
        return pts

    def mirror(self) -> View:
        """The same crop flipped left–right (a further, largely independent view for a network)."""
        s = self.image.shape[1]
        x0, y0, x1, y1 = self.face
        flipped = self.image[:, ::-1].copy()
        return replace(self, image=flipped, face=(s - x1, y0, s - x0, y1), mirrored=not self.mirrored)


def seed_of(image_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(image_id.encode(), digest_size=8).digest(), "little")


def view_boxes(box: np.ndarray, n: int, seed: int) -> list[tuple[float, float, float, float, float]]:
    """n square crop boxes (cx, cy, side, face cx, face cy) around the face box."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rng = np.random.default_rng(seed)
    params = list(FIXED[:n])
    while len(params) < n:
        params.append((rng.uniform(1.1, 1.8), rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)))
    return [(cx + dx * side, cy + dy * side, s * side, cx, cy) for s, dx, dy in params]


def make_views(image: np.ndarray, box: np.ndarray, n: int, size: int, seed: int, mirror: bool = False) -> list[View]:
    """Crop, pad and resize n views of `image` (HxWx3 uint8) around face `box` (x0,y0,x1,y1); with
    `mirror`, the n mirror images follow (2n views: the n direct ones first)."""
    pil = Image.fromarray(image)
    fw, fh = box[2] - box[0], box[3] - box[1]
    views = []
    for cx, cy, side, _, _ in view_boxes(np.asarray(box, float), n, seed):
        x0, y0 = cx - side / 2, cy - side / 2
        scale = size / side
        crop = _crop(pil, x0, y0, scale, size)
        fx0, fy0 = (box[0] - x0) * scale, (box[1] - y0) * scale
        views.append(View(crop, x0, y0, scale, (fx0, fy0, fx0 + fw * scale, fy0 + fh * scale)))
    return views + [v.mirror() for v in views] if mirror else views


def _crop(pil: Image.Image, x0: float, y0: float, scale: float, size: int) -> np.ndarray:
    """The view whose pixel u covers source x0 + u/scale; black where it leaves the image.

    Resampling only the part inside the image with `resize(box=…)` is exact and antialiased, and
    about 4x faster here than an affine `transform` of the whole view.
    """
    w, h = pil.size
    ox0, oy0 = max(0, math.ceil(-x0 * scale)), max(0, math.ceil(-y0 * scale))
    ox1, oy1 = min(size, math.floor((w - x0) * scale)), min(size, math.floor((h - y0) * scale))
    out = np.zeros((size, size, 3), np.uint8)
    if ox1 > ox0 and oy1 > oy0:
        src = (x0 + ox0 / scale, y0 + oy0 / scale, x0 + ox1 / scale, y0 + oy1 / scale)
        out[oy0:oy1, ox0:ox1] = np.asarray(pil.resize((ox1 - ox0, oy1 - oy0), Image.BILINEAR, box=src))
    return out
