"""The ingest stage: one partition of a source's plan → ingest rows + rejected rows.

Plain functions, no Dask: the runner in `pipeline/` calls `ingest_partition` on workers. The rows,
the image check and the settings live beside the readers (`readers/rows.py`).
"""

from __future__ import annotations

import pyarrow as pa

from pltd.stages.detect_faces import faces_beyond_first
from pltd.stages.readers.base import Source, get_reader
from pltd.stages.readers.rows import STAGE, IngestSettings

__all__ = ["STAGE", "IngestSettings", "ingest_partition", "rows_in"]


def ingest_partition(source: Source, plan: pa.Table, settings: IngestSettings) -> tuple[pa.Table, pa.Table]:
    """Read one planned partition of `source` (every plan row ends accepted or rejected)."""
    accepted, rejected = get_reader(source.format).read(source, plan, settings)
    if accepted.num_rows + rejected.num_rows != rows_in(plan, accepted, rejected):
        raise RuntimeError(
            f"reader {source.format} lost rows: plan {plan.num_rows} (+ {faces_beyond_first(accepted, rejected)} "
            f"faces beyond the first of their photo), accepted {accepted.num_rows} + rejected {rejected.num_rows}"
        )
    return accepted, rejected


def rows_in(plan: pa.Table, accepted: pa.Table, rejected: pa.Table) -> int:
    """The rows a partition accounts for: one per photo, plus the faces beyond the first of photos a
    face detector split (a source's `detect:`, `stages/detect_faces.py`)."""
    return plan.num_rows + faces_beyond_first(accepted, rejected)
