"""Per-row problems: raised while reading one image, caught by the reader, stored as a rejected row."""

from __future__ import annotations


class RowProblem(Exception):
    """A problem with one row; `reason` is the rejection reason, `detail` says exactly what was wrong."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
