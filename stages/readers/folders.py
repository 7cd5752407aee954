"""Folder datasets: VGGFace2 (`<root>/<class>/<file>.jpg` + optional loose_bb CSV) and plain folders."""

from __future__ import annotations

import posixpath
from typing import Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pltd.schemas import OPT_VECTOR, image_id
from pltd.stages.detect_faces import DetectOptions, add_detected_faces
from pltd.stages.images import ImageProblem
from pltd.stages.readers.base import PlanStats, Reader, ReaderOptions, Source, SourceError, plan_table, register
from pltd.stages.readers.rows import Rows, verify_image


def read_folder_partition(source: Source, plan: pa.Table, settings) -> tuple[pa.Table, pa.Table]:
    """Read every planned file; one accepted or rejected row per plan row."""
    fs, root = source.fs()
    rows = Rows(source)
    for item, label, bbox in zip(
        plan.column("item").to_pylist(), plan.column("label").to_pylist(), plan.column("bbox").to_pylist(), strict=True
    ):
        iid, url = image_id(source.name, item), source.url(item)
        try:
            with fs.open(posixpath.join(root, item), "rb") as f:
                data = f.read()
        except (OSError, FileNotFoundError) as exc:
            rows.reject(iid, "unreadable_file", str(exc), url)
            continue
        try:
            header = verify_image(data, settings)
        except ImageProblem as exc:
            rows.reject(iid, exc.reason, exc.detail, url)
            continue
        if bbox is not None and not (bbox[2] > bbox[0] and bbox[3] > bbox[1]):
            rows.reject(iid, "bad_box", f"dataset box {bbox} has no area", url)
            continue
        if bbox is None and getattr(source.options, "detect", "none") != "none":  # one row per face
            add_detected_faces(rows, source.name, item, label, url, data, header, source.options, settings)
            continue
        rows.accept_image(iid, url, len(data), header, source_label=label, offset=0, bbox=bbox)
    return rows.tables()


class VGGFace2Options(ReaderOptions):
    boxes: str | None = None  # loose_bb_{train,test}.csv: NAME_ID,X,Y,W,H with NAME_ID = class/file


@register
class VGGFace2Reader(Reader):
    format = "vggface2"
    Options = VGGFace2Options

    def check(self, source: Source) -> None:
        super().check(source)
        boxes = source.options.boxes
        if boxes is not None:
            fs, path = fsspec.core.url_to_fs(boxes)
            if not fs.exists(path):
                raise SourceError(f"source {source.name!r}: boxes file {boxes} does not exist")

    def plan_context(self, source: Source, work: str) -> dict:
        return {"boxes": boxes_to_parquet(source.options.boxes, work)} if source.options.boxes else {}

    def plan_listed(self, source: Source, rels: list[str], stats: PlanStats, context: dict) -> pa.Table:
        kept = []
        for rel in rels:
            if rel.count("/") != 1:
                stats.ignore("not_in_a_class_folder", rel)
            else:
                kept.append(rel)
        labels = [rel.split("/", 1)[0] for rel in kept]
        bboxes = join_boxes(context["boxes"], kept) if context.get("boxes") and kept else None
        return plan_table(kept, labels, bboxes)

    def read(self, source, plan, settings):
        return read_folder_partition(source, plan, settings)


BOX_COLUMNS = ("NAME_ID", "X", "Y", "W", "H")
BOX_ROW_GROUP = 65_536


def boxes_to_parquet(url: str, work: str) -> str:
    """VGGFace2 loose_bb CSV (NAME_ID,X,Y,W,H with NAME_ID = class/file) → `work/boxes.parquet`: name_id
    and bbox [x0, y0, x1, y1], sorted by name_id in row groups, so that a listing task reads only the
    row groups of its own class folders (`join_boxes`). Run once per plan, on a worker; pyarrow's CSV
    reader keeps the rows as Arrow columns (~60 B a row), not as Python objects."""
    from pyarrow import csv

    try:
        with fsspec.open(url, "rb") as f:
            table = csv.read_csv(f, convert_options=csv.ConvertOptions(column_types={"NAME_ID": pa.string()}))
    except pa.ArrowInvalid as exc:
        raise SourceError(f"boxes file {url}: not a readable CSV: {exc}") from None
    missing = set(BOX_COLUMNS) - set(table.column_names)
    if missing:
        raise SourceError(f"boxes file {url}: missing columns {sorted(missing)} (expected NAME_ID,X,Y,W,H)")
    x, y, w, h = (table.column(c).to_numpy().astype(np.float64) for c in BOX_COLUMNS[1:])
    corners = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32).reshape(-1)
    bbox = pa.ListArray.from_arrays(np.arange(0, corners.size + 1, 4, dtype=np.int32), corners, type=OPT_VECTOR)
    boxes = pa.table({"name_id": table.column("NAME_ID"), "bbox": bbox}).sort_by("name_id")
    out = posixpath.join(work, "boxes.parquet")
    fs, path = fsspec.core.url_to_fs(out)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(boxes, f, row_group_size=BOX_ROW_GROUP, compression="zstd")
    return out


def join_boxes(url: str, rels: list[str]) -> pa.Array:
    """The dataset box of each path (null where the CSV has none), reading only the row groups whose
    name_id range covers these paths' class folders (the paths are sorted, so their classes are a range)."""
    first, last = rels[0].split("/", 1)[0], rels[-1].split("/", 1)[0]
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as f:  # "/" + 1 == "0": every name_id of the classes first..last
        boxes = pq.read_table(f, filters=[("name_id", ">=", f"{first}/"), ("name_id", "<", f"{last}0")])
    stems = pa.array([rel.rsplit(".", 1)[0] for rel in rels], pa.string())
    return boxes.column("bbox").take(pc.index_in(stems, value_set=boxes.column("name_id")))


class ImageFolderOptions(ReaderOptions, DetectOptions):  # detect: none (default) | blazeface | dlib_cnn
    identity: Literal["folder", "none"] = "folder"  # folder: first directory under root is the identity


@register
class ImageFolderReader(Reader):
    format = "image_folder"
    Options = ImageFolderOptions

    def plan_listed(self, source: Source, rels: list[str], stats: PlanStats, context: dict) -> pa.Table:
        by_folder = source.options.identity == "folder"
        return plan_table(rels, [rel.split("/", 1)[0] if by_folder and "/" in rel else None for rel in rels])

    def read(self, source, plan, settings):
        return read_folder_partition(source, plan, settings)
