"""Trusting a run's files: each partition against its marker, the PLTD's shards against dataset.json.

A partition's marker carries, for its output and its rejected rows, the rows, bytes and SHA-256 of
the file as written. Two depths of check:

- `size_problems` (every resume, inside the runner): sizes from one listing of each output folder
  against the markers — catches a truncated, extended, missing or stray file at no read cost;
- `verify_run` (`pltd verify RUN`): every file read and hashed, rows from its Parquet footer —
  catches an alteration that keeps the size too. Files are read concurrently (threads: hashing
  and I/O release the GIL).

Why not hash at every resume: a resume of an 8 M-image run would re-read every stage's files
(hundreds of GB of ingest rows with their image bytes) before its first task; `benchmarks/verify.py`
measures the cost per 1,000 partitions.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pltd.pipeline import storage
from pltd.pipeline.layout import MARKERS, RunLayout, part_name, part_number

KINDS = ("output", "rejected")


def size_problems(layout: RunLayout, stage: str, source: str, markers: list[dict]) -> dict[int, str]:
    """Partition → what is wrong with its files' sizes (markers of one stage and source)."""
    sizes = {
        "output": storage.list_sizes(layout.stage_dir(stage, source)),
        "rejected": storage.list_sizes(layout.rejected_dir(stage, source)),
    }
    problems = {}
    for m in markers:
        files = m.get("files")
        if files is None:  # written before markers carried their files: trusted as before
            continue
        name = f"{part_name(m['part'])}.parquet"
        for kind in KINDS:
            want, have = files.get(kind), sizes[kind].get(name)
            if want is None and have is not None:
                problems[m["part"]] = f"{kind} file {name} exists but its marker names none"
            elif want is not None and have is None:
                problems[m["part"]] = f"{kind} file {name} is missing"
            elif want is not None and have != want["bytes"]:
                problems[m["part"]] = f"{kind} file {name} is {have} bytes, its marker says {want['bytes']}"
    return problems


def file_problem(url: str, want: dict) -> str | None:
    """What is wrong with one file against its rows/bytes/sha256 record, or None."""
    fs, path = storage.fs_path(url)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return "missing"
    if "bytes" in want and len(data) != want["bytes"]:
        return f"{len(data)} bytes, expected {want['bytes']}"
    if "sha256" in want and hashlib.sha256(data).hexdigest() != want["sha256"]:
        return "checksum differs (altered after it was written)"
    try:
        rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        return f"not a readable Parquet file ({exc})"
    if rows != want["rows"]:
        return f"{rows} rows, expected {want['rows']}"
    return None


@dataclass
class Report:
    checked_partitions: int = 0
    checked_shards: int = 0
    problems: list[str] = field(default_factory=list)
    damaged_markers: list[str] = field(default_factory=list)  # markers whose partitions are not to be trusted
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _marker_folders(layout: RunLayout) -> list[tuple[str, str]]:
    """(stage, source) of every per-partition marker folder in the run (one recursive listing)."""
    found = set()
    root = layout.root.rstrip("/")
    for url in storage.find(root):
        rel = url[len(root) :].lstrip("/") if url.startswith(root) else url
        parts = rel.split("/")
        if len(parts) == 4 and parts[2] == MARKERS and part_number(parts[3]) is not None:
            found.add((parts[0], parts[1]))
    return sorted(found)


def verify_run(layout: RunLayout, threads: int = 8) -> Report:
    """Every partition and shard of the run read and checked; what is wrong, one line each."""
    report = Report()
    checks: list[tuple[str, str, dict, str | None]] = []  # (what, url, record, marker url)
    for stage, source in _marker_folders(layout):
        names = storage.list_names(layout.marker_dir(stage, source))
        parts = sorted(n for n in map(part_number, names) if n is not None)
        markers = storage.read_jsons([layout.marker(stage, source, p) for p in parts])
        report.checked_partitions += len(markers)
        for m in markers:
            where = f"{stage}/{source}/{part_name(m['part'])}"
            files = m.get("files")
            if files is None:
                report.notes.append(f"{where}: marker written by an older pltd carries no checksums (not checked)")
                continue
            for kind in KINDS:
                url = (layout.output if kind == "output" else layout.rejected)(stage, source, m["part"])
                if files.get(kind) is not None:
                    checks.append((f"{where} {kind}", url, files[kind], layout.marker(stage, source, m["part"])))
                elif storage.exists(url):
                    report.problems.append(f"{where} {kind}: {url} exists but its marker names none")
                    report.damaged_markers.append(layout.marker(stage, source, m["part"]))
        marked = {f"{part_name(p)}.parquet" for p in parts}
        for name in storage.list_sizes(layout.stage_dir(stage, source)):
            if part_number(name) is not None and name not in marked:
                report.notes.append(f"{stage}/{source}/{name}: no marker (incomplete; a build recomputes it)")
    _shard_checks(layout, report, checks)
    with ThreadPoolExecutor(threads) as pool:
        found = pool.map(lambda c: file_problem(c[1], c[2]), checks)
        for (what, url, _, marker), problem in zip(checks, found, strict=True):
            if problem:
                report.problems.append(f"{what}: {url}: {problem}")
                if marker:
                    report.damaged_markers.append(marker)
    return report


def _shard_checks(layout: RunLayout, report: Report, checks: list) -> None:
    try:
        dataset = storage.read_json(layout.dataset_json)
    except FileNotFoundError:
        report.notes.append(f"{layout.dataset_json}: none (no PLTD published in this run)")
        return
    shards = dataset.get("shards", [])
    report.checked_shards = len(shards)
    if sum(s["rows"] for s in shards) != dataset.get("rows"):
        report.problems.append(f"{layout.dataset_json}: rows {dataset.get('rows')} ≠ the sum of its shards' rows")
    listed = {s["shard"] for s in shards}
    for name in storage.list_names(layout.pltd):
        if name.endswith(".parquet") and name not in listed:
            report.problems.append(f"pltd/{name}: a shard dataset.json does not list")
    for s in shards:
        checks.append((f"pltd/{s['shard']}", storage.join(layout.pltd, s["shard"]), s, None))


def repair(layout: RunLayout, report: Report) -> list[str]:
    """Drop what a build must not trust: damaged partitions' markers, and dataset.json if a shard is
    damaged; the next `pltd build` recomputes them. Returns the files removed."""
    removed = sorted(set(report.damaged_markers))
    if any(p.startswith("pltd/") or p.startswith(layout.dataset_json) for p in report.problems):
        removed.append(layout.dataset_json)
    for url in removed:
        storage.remove(url)
    return removed
