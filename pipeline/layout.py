"""The run directory's layout: every path of a run, and the one way to list and read part files.

```
RUN/manifest.resolved.yaml    settings and their per-stage hashes (refuses mixed runs)
RUN/plan/<source>.parquet     the partition plan; <source>.json (written last) marks it complete
RUN/<stage>/<source>/part-NNNNN.parquet          a partition's accepted rows
RUN/<stage>/<source>/_done/part-NNNNN.json       its completion marker (written last, with its stats)
RUN/rejected/<stage>/<source>/part-NNNNN.parquet its rejected rows
RUN/<stage>/_done.json        a global stage's marker (identities)
RUN/stats/<stage>.json        a stage's summary;  RUN/audit/<name>.json  the landmark audit
RUN/pltd/part-NNNNN.parquet   the PLTD shards, dataset.json (last) and the card
RUN/reconciliation.json, RUN/build.json
RUN/_lock.json                the build that holds the run (host, pid); removed when it ends
RUN/logs/worker-<pid>.log     the local workers' stderr (MediaPipe, TFLite, Dask), unless `pltd -v`
```

A partition's marker carries its stats and, for its output and rejected files, their rows, bytes
and SHA-256 (`runner.write_partition`); `verify.py` checks files against them.

Nothing else in `pipeline/` spells a path of a run. Completion is looked up by listing a stage's
marker folder once per source (one LIST request on an object store), not by a request per partition.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import pyarrow as pa

from pltd.pipeline import storage

MARKERS = "_done"


def part_name(part: int) -> str:
    return f"part-{part:05d}"


def part_number(filename: str) -> int | None:
    """`part-00017.parquet` / `part-00017.json` → 17; anything else → None."""
    stem = posixpath.basename(filename).split(".", 1)[0]
    if not stem.startswith("part-") or ".tmp-" in filename:
        return None
    digits = stem[5:]
    return int(digits) if digits.isdigit() else None


@dataclass(frozen=True)
class RunLayout:
    root: str

    def url(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    # --- files of the whole run
    @property
    def resolved(self) -> str:
        return self.url("manifest.resolved.yaml")

    @property
    def build_json(self) -> str:
        return self.url("build.json")

    @property
    def lock(self) -> str:
        return self.url("_lock.json")

    @property
    def reconciliation(self) -> str:
        return self.url("reconciliation.json")

    @property
    def logs(self) -> str:
        return self.url("logs")

    def stats(self, stage: str) -> str:
        return self.url("stats", f"{stage}.json")

    def audit(self, name: str) -> str:
        return self.url("audit", f"{name}.json")

    # --- plans
    def plan(self, source: str) -> str:
        return self.url("plan", f"{source}.parquet")

    def plan_marker(self, source: str) -> str:
        return self.url("plan", f"{source}.json")

    # --- stages
    def stage_dir(self, stage: str, source: str | None = None) -> str:
        return self.url(stage, source) if source else self.url(stage)

    def rejected_dir(self, stage: str, source: str | None = None) -> str:
        return self.url("rejected", stage, source) if source else self.url("rejected", stage)

    def output(self, stage: str, source: str, part: int) -> str:
        return self.url(stage, source, f"{part_name(part)}.parquet")

    def rejected(self, stage: str, source: str, part: int) -> str:
        return self.url("rejected", stage, source, f"{part_name(part)}.parquet")

    def marker_dir(self, stage: str, source: str) -> str:
        return self.url(stage, source, MARKERS)

    def marker(self, stage: str, source: str, part: int) -> str:
        return self.url(stage, source, MARKERS, f"{part_name(part)}.json")

    def global_marker(self, stage: str) -> str:
        return self.url(stage, f"{MARKERS}.json")

    def stage_file(self, stage: str, name: str) -> str:
        """A file a global stage writes (identities/id_map.parquet, …)."""
        return self.url(stage, name)

    def owned_by(self, stage: str) -> list[str]:
        """What a stage's results are: its folder, its rejected rows, its summary (what --force clears)."""
        return [self.stage_dir(stage), self.rejected_dir(stage), self.stats(stage)]

    # --- the PLTD
    @property
    def pltd(self) -> str:
        return self.url("pltd")

    def shard(self, i: int) -> str:
        return self.url("pltd", f"{part_name(i)}.parquet")

    @property
    def dataset_json(self) -> str:
        return self.url("pltd", "dataset.json")

    # --- completion
    def complete_parts(self, stage: str, source: str) -> set[int]:
        """Partitions of `source` whose marker exists: one listing of the marker folder."""
        names = storage.list_names(self.marker_dir(stage, source))
        return {n for n in map(part_number, names) if n is not None}


def part_files(url: str) -> list[str]:
    """Every part file under `url` (recursively), sorted; markers and temporaries are not part files."""
    return sorted(
        u
        for u in storage.find(url)
        if part_number(u) is not None and u.endswith(".parquet") and f"/{MARKERS}/" not in u
    )


def read_parts(url: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table | None:
    """The rows of every part file under `url` as one table; None (or `schema`'s empty table) if there are none."""
    tables = [storage.read_table(u, columns) for u in part_files(url)]
    if tables:
        return pa.concat_tables(tables, promote_options="default")
    if schema is None:
        return None
    empty = schema.empty_table()
    return empty.select(columns) if columns else empty


def part_rows(url: str) -> int:
    """Rows of every part file under `url`, from the Parquet footers alone (fetched in batched range requests)."""
    return sum(m.num_rows for m in storage.footers(part_files(url)))
