"""`pltd show`: contact sheets of labelled faces (landmarks + pose axes) and of rejected images.

A rejected image's tile carries what the run stored about it — source, stage, reason, detail ("0
bytes", "image file is truncated (17 bytes not processed)", "missing Pose_Para") and the file —
wrapped over as many lines as it needs, never cut. Its pixels are drawn when they still decode; a
rejected RecordIO row has no `offset` (ingest never accepted it), so the record's offset comes from
the run's plan.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout
from pltd.pose import rotation
from pltd.stages.fetch import Fetcher
from pltd.stages.images import ImageProblem, decode_rgb

TILE = 160
LINE = 11  # pixels per caption line (Pillow's default bitmap font is 11 px high)
CHARS = 26  # characters per caption line at TILE width


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


def caption_lines(text: str, width: int = CHARS) -> list[str]:
    """Wrap each ' | '-separated part of a caption on its own lines; nothing is dropped."""
    lines: list[str] = []
    for part in text.split(" | "):
        lines += textwrap.wrap(part, width, break_long_words=True, break_on_hyphens=False) or [""]
    return lines


def _caption(tile: Image.Image, text: str) -> None:
    lines = caption_lines(text)
    height = min(TILE, LINE * len(lines) + 3)
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, TILE - height, TILE, TILE], fill=(0, 0, 0))
    for i, line in enumerate(lines[-(TILE // LINE) :]):
        draw.text((3, TILE - height + 1 + i * LINE), line, fill=(255, 255, 255))


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
        _caption(tile, caption)
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


def rejected_caption(r: dict) -> str:
    """'vggface2 | ingest: empty_file | 0 bytes | n000003/bad_empty.jpg' (record N for a .rec)."""
    where = f"record {r['record_index']}" if r.get("record_index") is not None else r["source_path"]
    where = where.rsplit("/", 2)[-2:] if "/" in where else [where]
    parts = [r["source"], f"{r['stage']}: {r['reason']}", r.get("detail") or "", "/".join(where)]
    return " | ".join(p for p in parts if p)


def _record_offsets(run: str, rows: list[dict]) -> dict[tuple[str, int], int]:
    """(source, record index) → byte offset, from the plans of the sources with rejected records."""
    sources = {r["source"] for r in rows if r.get("record_index") is not None}
    out = {}
    for s in sources:
        plan = storage.read_table(RunLayout(run).plan(s), ["item", "offset"])
        out.update(
            {(s, int(i)): o for i, o in zip(*(plan.column(c).to_pylist() for c in ("item", "offset")), strict=True)}
        )
    return out


def rejected_tiles(run: str, rows: list[dict], ingested: dict[str, dict]) -> list[tuple[Image.Image, str, str | None]]:
    """(tile, caption, why the pixels could not be drawn or None) for each rejected row."""
    offsets = _record_offsets(run, rows)
    out = []
    with Fetcher() as fetch:
        for r in rows:
            cap = rejected_caption(r)
            row = ingested.get(r["image_id"]) or {**r, "offset": offsets.get((r["source"], r.get("record_index")))}
            try:
                image = decode_rgb(fetch.bytes_of(row))
            except (ImageProblem, OSError, ValueError) as exc:
                tile = Image.new("RGB", (TILE, TILE), (90, 20, 20))
                ImageDraw.Draw(tile).text((4, 4), "no image to draw", fill=(255, 200, 200))
                _caption(tile, cap)
                out.append((tile, cap, f"{type(exc).__name__}: {exc}"))
                continue
            h, w = image.shape[:2]
            out.append((_tile(image, (0, 0, w / 1.4, h / 1.4), caption=cap), cap, None))
    return out


def show(run: str, out: str, limit: int = 48, cols: int = 8) -> tuple[str, str, int, int]:
    """Write `out` (accepted faces) and `out` with `_rejected` (rejected images); return paths and counts."""
    ingest = _tables(run, "ingest")
    labels = _tables(run, "landmarks")
    if ingest is None or labels is None:
        raise FileNotFoundError(f"{run}: no ingest/ or landmarks/ output; run `pltd build` first")
    where = {r["image_id"]: r for r in ingest.to_pylist()}
    rejected = _tables(run, "rejected")
    tiles = []
    with Fetcher() as fetch:
        for r in _round_robin(labels.to_pylist(), limit):
            image = decode_rgb(fetch.bytes_of(where[r["image_id"]]))
            kind = "GT" if r["label_kind"] == "ground_truth" else "PL"
            y, p, ro = r["pose"]
            cap = f"{r['source']} {kind} | yaw {y:+.0f} pitch {p:+.0f} roll {ro:+.0f}"
            tiles.append(_tile(image, r["face_box"], r["landmarks"], r["pose"], cap))
    bad = rejected_tiles(run, _round_robin(rejected.to_pylist(), limit) if rejected is not None else [], where)
    out_rej = out[:-4] + "_rejected.png" if out.endswith(".png") else out + "_rejected.png"
    _sheet(tiles, cols).save(out)
    _sheet([t for t, _, _ in bad], cols).save(out_rej)
    return out, out_rej, len(tiles), len(bad)
