"""Dataset readers: a registry of formats, each planning partitions and reading one partition.

A reader turns a source root into a *plan* (one row per image, each with a fixed partition number)
on the driver, and reads one partition of that plan on a worker into ingest rows (`INGEST` schema)
plus rejected rows. Per-image problems become rejected rows; whole-dataset problems (missing root,
unreadable index) raise `SourceError` at start-up, naming the path.
"""

from __future__ import annotations

import posixpath
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
        self.ignored[why] = self.ignored.get(why, 0) + 1
        self.examples.setdefault(why, [])
        if len(self.examples[why]) < 5:
            self.examples[why].append(what)


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
    """Base class; subclasses set `format`, `Options` and implement `plan_items` and `read`."""

    format: ClassVar[str]
    Options: ClassVar[type[ReaderOptions]] = ReaderOptions

    def check(self, source: Source) -> None:
        """Start-up checks; the default requires the root to exist."""
        fs, root = source.fs()
        if not fs.exists(root):
            raise SourceError(f"source {source.name!r} ({source.format}): root {source.root} does not exist")

    def plan_items(self, source: Source, stats: PlanStats) -> Iterator[dict]:
        """Yield plan rows (without `part`) in a deterministic order."""
        raise NotImplementedError

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


def list_images(source: Source, stats: PlanStats, companions: tuple[str, ...] = ()) -> list[str]:
    """All image files under the root, as sorted paths relative to it.

    Files with a `companions` extension (annotations read beside their image) are expected;
    any other non-image file is counted in `stats` so that the plan reports what it left out.
    """
    fs, root = source.fs()
    found = fs.find(root, withdirs=False)
    rels = []
    for p in found:
        rel = posixpath.relpath(p, root)
        if rel.lower().endswith(IMAGE_EXTENSIONS):
            rels.append(rel)
        elif not posixpath.basename(rel).startswith(".") and not rel.lower().endswith(companions):
            stats.ignore("not_an_image_extension", rel)
    return sorted(rels)
