"""Folder datasets: VGGFace2 (`<root>/<class>/<file>.jpg` + optional loose_bb CSV) and plain folders."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Literal

import fsspec
import pyarrow as pa

from pltd.schemas import image_id
from pltd.stages.images import ImageProblem
from pltd.stages.readers.base import PlanStats, Reader, ReaderOptions, Source, SourceError, list_images, register
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

    def plan_items(self, source: Source, stats: PlanStats) -> Iterator[dict]:
        boxes = _load_boxes(source.options.boxes) if source.options.boxes else {}
        for rel in list_images(source, stats):
            parts = rel.split("/")
            if len(parts) != 2:
                stats.ignore("not_in_a_class_folder", rel)
                continue
            yield {"item": rel, "label": parts[0], "bbox": boxes.get(rel.rsplit(".", 1)[0])}

    def read(self, source, plan, settings):
        return read_folder_partition(source, plan, settings)


def _load_boxes(url: str) -> dict[str, list[float]]:
    """VGGFace2 loose_bb CSV → {"class/file": [x0, y0, x1, y1]}."""
    import pandas as pd  # ~1 s to import: only when a source has a boxes file, not to validate a manifest

    with fsspec.open(url, "rt") as f:
        df = pd.read_csv(f)
    missing = {"NAME_ID", "X", "Y", "W", "H"} - set(df.columns)
    if missing:
        raise SourceError(f"boxes file {url}: missing columns {sorted(missing)} (expected NAME_ID,X,Y,W,H)")
    x, y = df["X"].to_numpy(float), df["Y"].to_numpy(float)
    x1, y1 = x + df["W"].to_numpy(float), y + df["H"].to_numpy(float)
    return {n: [a, b, c, d] for n, a, b, c, d in zip(df["NAME_ID"].astype(str), x, y, x1, y1, strict=True)}


class ImageFolderOptions(ReaderOptions):
    identity: Literal["folder", "none"] = "folder"  # folder: first directory under root is the identity


@register
class ImageFolderReader(Reader):
    format = "image_folder"
    Options = ImageFolderOptions

    def plan_items(self, source: Source, stats: PlanStats) -> Iterator[dict]:
        for rel in list_images(source, stats):
            label = rel.split("/")[0] if source.options.identity == "folder" and "/" in rel else None
            yield {"item": rel, "label": label, "bbox": None}

    def read(self, source, plan, settings):
        return read_folder_partition(source, plan, settings)
