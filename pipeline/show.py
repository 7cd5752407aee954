"""`pltd show`: contact sheets of labelled faces (landmarks + pose axes) and of rejected images."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from pltd.pipeline import storage
from pltd.pose import rotation
from pltd.stages.fetch import Fetcher
from pltd.stages.images import ImageProblem, decode_rgb

TILE = 160


def _tables(run: str, sub: str) -> pa.Table | None:
    fs, root = storage.fs_path(storage.join(run, sub))
    if not fs.exists(root):
        return None
    files = sorted(p for p in fs.find(root) if p.endswith(".parquet") and "/_" not in p and ".tmp-" not in p)
    tables = []
    for p in files:
        with fs.open(p, "rb") as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables, promote_options="default") if tables else None


def _tile(image: np.ndarray, box, landmarks=None, pose=None, caption: str = "") -> Image.Image:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * 1.4
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    crop_box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    tile = Image.fromarray(image).transform((TILE, TILE), Image.EXTENT, crop_box, Image.BILINEAR)
    draw = ImageDraw.Draw(tile)
    k = TILE / side
    if landmarks is not None:
        pts = (np.asarray(landmarks, float).reshape(68, 2) - [crop_box[0], crop_box[1]]) * k
        for x, y in pts:
            draw.ellipse([x - 1.2, y - 1.2, x + 1.2, y + 1.2], fill=(0, 255, 0))
        if pose is not None:
            r = rotation(*pose)
            nose = pts[30]
            for axis, color in zip(np.eye(3), ((255, 0, 0), (0, 255, 0), (0, 128, 255)), strict=True):
                d = r @ axis * TILE * 0.25
                draw.line([tuple(nose), (nose[0] + d[0], nose[1] - d[1])], fill=color, width=2)
    if caption:
        draw.rectangle([0, TILE - 14, TILE, TILE], fill=(0, 0, 0))
        draw.text((3, TILE - 13), caption[:30], fill=(255, 255, 255))
    return tile


def _sheet(tiles: list[Image.Image], cols: int) -> Image.Image:
    rows = max(1, (len(tiles) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * TILE, rows * TILE), (40, 40, 40))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * TILE, (i // cols) * TILE))
    return sheet


def _round_robin(rows: list[dict], limit: int) -> list[dict]:
    """Up to `limit` rows taking turns between sources, so every source is on the sheet."""
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    out: list[dict] = []
    queues = [iter(v) for v in by_source.values()]
    while queues and len(out) < limit:
        for q in list(queues):
            r = next(q, None)
            if r is None:
                queues.remove(q)
            elif len(out) < limit:
                out.append(r)
    return out


def show(run: str, out: str, limit: int = 48, cols: int = 8) -> tuple[str, str, int, int]:
    """Write `out` (accepted faces) and `out` with `_rejected` (rejected images); return paths and counts."""
    ingest = _tables(run, "ingest")
    labels = _tables(run, "landmarks")
    if ingest is None or labels is None:
        raise FileNotFoundError(f"{run}: no ingest/ or landmarks/ output; run `pltd build` first")
    where = {r["image_id"]: r for r in ingest.to_pylist()}
    rejected = _tables(run, "rejected")
    tiles, bad = [], []
    with Fetcher() as fetch:
        for r in _round_robin(labels.to_pylist(), limit):
            image = decode_rgb(fetch.bytes_of(where[r["image_id"]]))
            kind = "GT" if r["label_kind"] == "ground_truth" else "PL"
            cap = f"{r['source'][:8]} {kind} y{r['pose'][0]:+.0f} p{r['pose'][1]:+.0f} r{r['pose'][2]:+.0f}"
            tiles.append(_tile(image, r["face_box"], r["landmarks"], r["pose"], cap))
        for r in (rejected.to_pylist() if rejected is not None else [])[:limit]:
            cap = f"{r['stage']} {r['reason']}"
            row = where.get(r["image_id"])
            try:
                image = decode_rgb(fetch.bytes_of(row or r))
                h, w = image.shape[:2]
                bad.append(_tile(image, (0, 0, w / 1.4, h / 1.4), caption=cap))
            except (ImageProblem, OSError, KeyError, ValueError) as exc:
                tile = Image.new("RGB", (TILE, TILE), (90, 20, 20))
                ImageDraw.Draw(tile).text((4, 60), f"undecodable\n{type(exc).__name__}", fill=(255, 255, 255))
                ImageDraw.Draw(tile).text((3, TILE - 13), cap[:30], fill=(255, 255, 255))
                bad.append(tile)
    out_rej = out[:-4] + "_rejected.png" if out.endswith(".png") else out + "_rejected.png"
    _sheet(tiles, cols).save(out)
    _sheet(bad, cols).save(out_rej)
    return out, out_rej, len(tiles), len(bad)
