"""Dataset readers: a registry of formats, each planning partitions and reading one partition.

A reader turns a source root into a *plan* (one row per image, each with a fixed partition number)
on the driver, and reads one partition of that plan on a worker into ingest rows (`INGEST` schema)
plus rejected rows. Per-image problems become rejected rows; whole-dataset problems (missing root,
unreadable index) raise `SourceError` at start-up, naming the path.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import fsspec
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from pltd.registry import Registry
from pltd.schemas import OPT_VECTOR

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# The plan: what the driver decides once and saves, so partition ids never change on a rerun.
PLAN = pa.schema(
    [
        pa.field("part", pa.int32(), nullable=False),
        pa.field("item", pa.string(), nullable=False),  # path relative to root, or record key
        pa.field("offset", pa.int64()),  # byte offset for RecordIO, else null
        pa.field("label", pa.string()),  # identity known at plan time (folder name), else null
        pa.field("bbox", OPT_VECTOR),  # face box given by the dataset (VGGFace2 loose_bb), else null
    ]
)


PLAN_ITEMS = pa.schema([f for f in PLAN if f.name != "part"])  # what a reader plans; the plan adds `part`


class SourceError(Exception):
    """A whole source is unusable; raised before any work starts."""


class ReaderOptions(BaseModel):
    """Options a source may set beyond name/format/root; readers subclass with their own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PlanStats:
    """What planning saw besides images: files it did not take, and why."""

    images: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def ignore(self, why: str, what: str) -> None:
        self.ignore_many(why, 1, [what])

    def ignore_many(self, why: str, n: int, examples: list[str]) -> None:
        """`n` things left out for `why`; the first few of `examples` are kept."""
        self.ignored[why] = self.ignored.get(why, 0) + n
        kept = self.examples.setdefault(why, [])
        kept += examples[: max(0, 5 - len(kept))]

    def merge(self, other: PlanStats) -> None:
        """Add the stats of the next chunk of a plan (examples stay the first ones in plan order)."""
        self.images += other.images
        for why, n in other.ignored.items():
            self.ignore_many(why, n, other.examples.get(why, []))


@dataclass(frozen=True)
class Source:
    """A configured source, as readers see it: plain values, picklable to workers."""

    name: str
    format: str
    root: str
    options: Any  # the reader's ReaderOptions subclass instance

    def fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, path = fsspec.core.url_to_fs(self.root)
        return fs, path.rstrip("/") or "/"

    def url(self, rel: str) -> str:
        """A location inside the root, as a URL (or local path) for source_path columns."""
        return posixpath.join(self.root.rstrip("/"), rel)


class Reader:
    """Base class; subclasses set `format`, `Options` and implement `read` and either `plan_listed`
    (sources planned by listing a folder tree, in parallel on the workers: `pipeline/plan.py`) or
    `plan_streamed` (sources planned from an index file, streamed on the driver)."""

    format: ClassVar[str]
    Options: ClassVar[type[ReaderOptions]] = ReaderOptions
    companions: ClassVar[tuple[str, ...]] = ()  # annotation files read beside their image, not "ignored"

    def check(self, source: Source) -> None:
        """Start-up checks; the default requires the root to exist."""
        fs, root = source.fs()
        if not fs.exists(root):
            raise SourceError(f"source {source.name!r} ({source.format}): root {source.root} does not exist")

    def plan_context(self, source: Source, work: str) -> dict:
        """Once per plan, before the listing tasks (on a worker): what every task needs (a boxes file
        converted under the folder `work`). Picklable values only."""
        return {}

    def plan_listed(self, source: Source, rels: list[str], stats: PlanStats, context: dict) -> pa.Table:
        """The plan rows (`PLAN_ITEMS`) of a sorted run of image paths relative to the root."""
        raise NotImplementedError

    def plan_streamed(self, source: Source, stats: PlanStats) -> Iterator[pa.Table] | None:
        """Plan rows streamed in chunks, for readers planned from an index rather than a listing; None: listed."""
        return None

    def plan_items(self, source: Source, stats: PlanStats) -> Iterator[dict]:
        """Every plan row (without `part`) in plan order, in this process; `pipeline/plan.py` does the
        same in chunks on the workers."""
        streamed = self.plan_streamed(source, stats)
        if streamed is not None:
            for table in streamed:
                yield from table.to_pylist()
            return
        with tempfile.TemporaryDirectory() as work:
            context = self.plan_context(source, work)
            yield from self.plan_listed(source, list_images(source, stats, self.companions), stats, context).to_pylist()

    def read(self, source: Source, plan: pa.Table, settings: Any) -> tuple[pa.Table, pa.Table]:
        """Read one partition of the plan: (ingest rows, rejected rows)."""
        raise NotImplementedError


READERS: Registry[type[Reader]] = Registry("source format")  # filled by the modules `readers/__init__` imports


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator: a reader registers under its `format`."""
    return READERS.add(cls.format, cls)


def get_reader(fmt: str) -> Reader:
    return READERS.get(fmt)()


def known_formats() -> list[str]:
    return READERS.names()


# A folder-tree entry: (path relative to the root, whether it is a folder).
Entry = tuple[str, bool]


def entry_key(entry: Entry) -> str:
    """The order of an entry among its siblings: a folder `a` sorts as `a/`, where its files' paths do.
    Every path under an entry starts with this key and no sibling's key is a prefix of it, so listing
    entries in this order and each entry's files sorted gives every file in sorted order, exactly as
    sorting the whole tree's paths does: partition ids do not depend on how the listing was split."""
    rel, is_dir = entry
    return f"{rel}/" if is_dir else rel


def list_entries(fs: fsspec.AbstractFileSystem, root: str, rel: str = "") -> list[Entry]:
    """The entries of one folder under the root (one listing), in `entry_key` order."""
    found = fs.ls(posixpath.join(root, rel) if rel else root, detail=True)
    entries = [(posixpath.relpath(e["name"].rstrip("/"), root), e["type"] == "directory") for e in found]
    return sorted(entries, key=entry_key)


def tree_entries(source: Source, at_least: int, max_depth: int = 3) -> list[Entry]:
    """The root's entries; while there are fewer than `at_least`, folders are opened one level more
    (a root holding one `train/` folder still splits into many listing tasks)."""
    fs, root = source.fs()
    entries = list_entries(fs, root)
    for _ in range(max_depth):
        if len(entries) >= at_least or not any(is_dir for _, is_dir in entries):
            break
        entries = [e for rel, is_dir in entries for e in (list_entries(fs, root, rel) if is_dir else [(rel, False)])]
    return entries


def list_images(
    source: Source, stats: PlanStats, companions: tuple[str, ...] = (), entries: list[Entry] | None = None
) -> list[str]:
    """The image files under `entries` (default: the whole root), as sorted paths relative to the root.

    Files with a `companions` extension (annotations read beside their image) are expected;
    any other non-image file is counted in `stats` so that the plan reports what it left out.
    """
    fs, root = source.fs()
    rels = []
    for rel, is_dir in entries if entries is not None else [("", True)]:
        under = posixpath.join(root, rel) if rel else root
        found = sorted(posixpath.relpath(p, root) for p in fs.find(under, withdirs=False)) if is_dir else [rel]
        for r in found:
            if r.lower().endswith(IMAGE_EXTENSIONS):
                rels.append(r)
            elif not posixpath.basename(r).startswith(".") and not r.lower().endswith(companions):
                stats.ignore("not_an_image_extension", r)
    return rels


def plan_table(items: list[str], labels: list[str | None], bboxes: pa.Array | list | None = None) -> pa.Table:
    """Plan rows (`PLAN_ITEMS`) of image paths with their labels and dataset boxes (null when None)."""
    n = len(items)
    bbox = bboxes if bboxes is not None else pa.nulls(n, PLAN_ITEMS.field("bbox").type)
    return pa.table([items, pa.nulls(n, pa.int64()), labels, bbox], schema=PLAN_ITEMS)
