"""The assemble stage over one partition: PLTD rows (a JPEG of the face-centred region, with box
and landmarks moved into its pixels) from ingest + landmarks + identities."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field

from pltd.schemas import PLTD, REJECTED
from pltd.stages.fetch import Fetcher
from pltd.stages.identities.embed import identity_of
from pltd.stages.images import ImageProblem, decode_rgb
from pltd.stages.landmarks.visibility import self_occlusion
from pltd.stages.problems import reason_of, rejected_row
from pltd.validation import Strict

STAGE = "assemble"


class AssembleSettings(Strict):
    """The manifest's `output` section (the one definition of its defaults): the stored face region,
    then how `pipeline/publish.py` cuts the shards."""

    region_long_side: int = Field(256, ge=32, le=4096)  # JPEG long side at most this
    region_scale: float = Field(2.0, ge=1.0, le=4.0)  # region side / the landmarks' box side (room for crops)
    jpeg_quality: int = Field(95, ge=1, le=100)
    rows_per_shard: int = Field(10_000, ge=1)
    bytes_per_shard: int | None = Field(None, ge=1_000_000)  # also cut a shard at about this size
    row_group_rows: int = Field(1000, ge=1)


@dataclass(frozen=True)
class Region:
    x0: int
    y0: int
    kx: float  # output pixels per source pixel, per axis
    ky: float
    width: int
    height: int

    def map(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, float).reshape(-1, 2)
        return np.stack([(p[:, 0] - self.x0) * self.kx, (p[:, 1] - self.y0) * self.ky], axis=1)


def face_region(image: np.ndarray, landmarks: np.ndarray, s: AssembleSettings) -> tuple[np.ndarray, Region]:
    """Crop a square of region_scale × the face around the landmarks (clipped to the image) and
    shrink it so its long side is at most region_long_side."""
    h, w = image.shape[:2]
    pts = np.asarray(landmarks, float).reshape(68, 2)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, s.region_scale * max(x1 - x0, y1 - y0) / 2
    rx0, ry0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    rx1, ry1 = min(w, math.ceil(cx + half)), min(h, math.ceil(cy + half))
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:
        raise ImageProblem("region_outside_image", f"face region {rx0},{ry0},{rx1},{ry1} in a {w}x{h} image")
    crop = Image.fromarray(image).crop((rx0, ry0, rx1, ry1))
    k = min(1.0, s.region_long_side / max(crop.size))
    out_w, out_h = max(1, round(crop.size[0] * k)), max(1, round(crop.size[1] * k))
    if (out_w, out_h) != crop.size:
        crop = crop.resize((out_w, out_h), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(crop), Region(rx0, ry0, out_w / (rx1 - rx0), out_h / (ry1 - ry0), out_w, out_h)


def _nan_or(v, n: int) -> list[float]:
    return [float("nan")] * n if v is None else [float(x) for x in v]


def assemble_partition(
    ingest: pa.Table,
    landmarks: pa.Table,
    keep: set[str] | None,
    id_map: dict[tuple[str, str], int],
    s: AssembleSettings,
) -> tuple[pa.Table, pa.Table, int]:
    """PLTD rows for the partition's images that reached this stage (`keep`: the last stage's ids)."""
    where = {r["image_id"]: r for r in ingest.to_pylist()}
    rows: list[dict] = []
    rej: list[dict] = []
    todo = [r for r in landmarks.to_pylist() if keep is None or r["image_id"] in keep]
    with Fetcher() as fetch:
        for lm in todo:
            src = where[lm["image_id"]]
            try:
                image = decode_rgb(fetch.bytes_of(src))
                region, geo = face_region(image, lm["landmarks"], s)
            except (ImageProblem, OSError) as exc:
                rej.append(rejected_row(src, STAGE, *reason_of(exc)))
                continue
            pts = geo.map(lm["landmarks"])
            buf = io.BytesIO()
            Image.fromarray(region).save(buf, format="JPEG", quality=s.jpeg_quality)
            gt = lm["label_kind"] == "ground_truth"
            path = src["source_path"] + (f"#{src['record_index']}" if src.get("record_index") is not None else "")
            rows.append(
                {
                    "image_id": lm["image_id"],
                    "source": lm["source"],
                    "source_label": src["source_label"] if src["source_label"] is not None else src.get("base_id"),
                    "face_id": id_map[(lm["source"], identity_of(src))],
                    "image": buf.getvalue(),
                    "width": geo.width,
                    "height": geo.height,
                    "bbox": [*pts.min(axis=0).tolist(), *pts.max(axis=0).tolist()],
                    "landmarks": pts.reshape(-1).tolist(),
                    "pose": _nan_or(lm["pose"], 3),
                    "label_kind": lm["label_kind"],
                    "n_samples": 0 if gt else lm["n_samples"],
                    "fit_error": float("nan") if gt or lm["fit_error"] is None else lm["fit_error"],
                    "eye_closed": _nan_or(lm["eye_closed"], 2),
                    "source_path": path,
                }
            )
    if rows:  # the back-face test of every row's pose on the mean 3D face, once for the partition
        visible = self_occlusion(np.array([r["pose"] for r in rows], float).reshape(-1, 3))
        for r, v in zip(rows, visible.tolist(), strict=True):
            r["visible"] = v
    return pa.Table.from_pylist(rows, schema=PLTD), pa.Table.from_pylist(rej, schema=REJECTED), len(todo)
