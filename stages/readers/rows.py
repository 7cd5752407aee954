"""What every reader builds with: the ingest settings, the image check, and the rows of a partition.

Beside the readers (not in `stages/ingest.py`) so that readers import nothing that imports them.
"""

from __future__ import annotations

import io
from typing import Literal

import pyarrow as pa
from PIL import Image
from pydantic import Field

from pltd.schemas import INGEST, REJECTED
from pltd.stages.images import DEFAULT_MAX_PIXELS, Header, ImageProblem, read_header, to_rgb
from pltd.validation import Strict

STAGE = "ingest"


class IngestSettings(Strict):
    """The manifest's `ingest` section; the one definition of its defaults."""

    rows_per_partition: int = Field(1000, ge=1, le=1_000_000)  # images per partition (the unit of resume)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    min_image_side: int = Field(8, ge=1)
    verify: Literal["full", "header"] = "full"  # full: decode every image (catches truncation); header only


def verify_image(data: bytes, settings: IngestSettings) -> Header:
    """Check that `data` is a usable image and return its header; raises ImageProblem."""
    header = read_header(data, settings.max_image_pixels)
    if min(header.width, header.height) < settings.min_image_side:
        raise ImageProblem(
            "image_too_small", f"{header.width}x{header.height} below min_image_side={settings.min_image_side}"
        )
    if settings.verify == "full":
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.format == "JPEG":
                    # DCT-domain downscaling still walks every scan, so truncation is caught at
                    # a fraction of the cost of a full-size decode.
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
                to_rgb(im)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageProblem("decode_error", str(exc)) from exc
    return header


class Rows:
    """Accumulates a partition's accepted and rejected rows as columns."""

    def __init__(self, source):  # a readers.base.Source
        self.source = source.name
        self.accepted: dict[str, list] = {f.name: [] for f in INGEST}
        self.rejected: dict[str, list] = {f.name: [] for f in REJECTED}

    def accept(self, **row) -> None:
        row.setdefault("source", self.source)
        for name, col in self.accepted.items():
            col.append(row.get(name))

    def accept_image(self, image_id: str, url: str, length: int, header: Header, **row) -> None:
        """Accept a decoded image: its header fills format, mode and size."""
        self.accept(
            image_id=image_id,
            source_path=url,
            length=length,
            format=header.format,
            mode=header.mode,
            width=header.width,
            height=header.height,
            **row,
        )

    def reject(
        self,
        image_id: str,
        reason: str,
        detail: str,
        source_path: str,
        record_index: int | None = None,
        face_index: int | None = None,
    ):
        row = dict(
            image_id=image_id,
            source=self.source,
            stage=STAGE,
            reason=reason,
            detail=detail,
            source_path=source_path,
            record_index=record_index,
            face_index=face_index,
        )
        for name, col in self.rejected.items():
            col.append(row[name])

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return (
            pa.Table.from_pydict(self.accepted, schema=INGEST),
            pa.Table.from_pydict(self.rejected, schema=REJECTED),
        )
