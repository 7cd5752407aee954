"""Per-row problems: raised while reading one image, caught by the reader, stored as a rejected row."""

from __future__ import annotations


class RowProblem(Exception):
    """A problem with one row; `reason` is the rejection reason, `detail` says exactly what was wrong."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def rejected_row(row: dict, stage: str, reason: str, detail: str) -> dict:
    """A REJECTED row for an ingested image (`row` carries image_id, source, source_path, record_index)."""
    return {
        "image_id": row["image_id"],
        "source": row["source"],
        "stage": stage,
        "reason": reason,
        "detail": detail,
        "source_path": row.get("source_path"),
        "record_index": row.get("record_index"),
    }


def reason_of(exc: Exception) -> tuple[str, str]:
    """(reason, detail) of a per-row exception: a RowProblem's own, else an unreadable file."""
    if isinstance(exc, RowProblem):
        return exc.reason, exc.detail
    return "unreadable_file", f"{type(exc).__name__}: {exc}"
