"""The ingest stage: one partition of a source's plan → ingest rows + rejected rows.

Plain functions, no Dask: the runner in `pipeline/` calls `ingest_partition` on workers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
from PIL import Image

from pltd.schemas import INGEST, REJECTED
from pltd.stages.images import DEFAULT_MAX_PIXELS, Header, ImageProblem, read_header, to_rgb
from pltd.stages.readers.base import Source, get_reader

STAGE = "ingest"


@dataclass(frozen=True)
class IngestSettings:
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    min_image_side: int = 8
    verify: str = "full"  # "full": decode every image (catches truncation); "header": header only


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

    def __init__(self, source: Source):
        self.source = source
        self.accepted: dict[str, list] = {f.name: [] for f in INGEST}
        self.rejected: dict[str, list] = {f.name: [] for f in REJECTED}

    def accept(self, **row) -> None:
        row.setdefault("source", self.source.name)
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

    def reject(self, image_id: str, reason: str, detail: str, source_path: str, record_index: int | None = None):
        row = dict(
            image_id=image_id,
            source=self.source.name,
            stage=STAGE,
            reason=reason,
            detail=detail,
            source_path=source_path,
            record_index=record_index,
        )
        for name, col in self.rejected.items():
            col.append(row[name])

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return (
            pa.Table.from_pydict(self.accepted, schema=INGEST),
            pa.Table.from_pydict(self.rejected, schema=REJECTED),
        )


def ingest_partition(source: Source, plan: pa.Table, settings: IngestSettings) -> tuple[pa.Table, pa.Table]:
    """Read one planned partition of `source` (every plan row ends accepted or rejected)."""
    accepted, rejected = get_reader(source.format).read(source, plan, settings)
    if accepted.num_rows + rejected.num_rows != plan.num_rows:
        raise RuntimeError(
            f"reader {source.format} lost rows: plan {plan.num_rows}, "
            f"accepted {accepted.num_rows} + rejected {rejected.num_rows}"
        )
    return accepted, rejected
