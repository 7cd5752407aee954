"""Read an ingested image's bytes back from where it lives (file, or a record of a `.rec`)."""

from __future__ import annotations

import fsspec

from pltd.stages.recordio import read_record, unpack


class Fetcher:
    """Keeps `.rec` files open across the rows of a partition."""

    def __init__(self) -> None:
        self._open: dict[str, tuple] = {}

    def bytes_of(self, row: dict) -> bytes:
        url = row["source_path"]
        if row.get("record_index") is None:
            with fsspec.open(url, "rb") as f:
                return f.read()
        if url not in self._open:
            fs, path = fsspec.core.url_to_fs(url)
            self._open[url] = (fs.open(path, "rb"), fs.size(path))
        f, size = self._open[url]
        return unpack(read_record(f, int(row["offset"]), size))[1]

    def close(self) -> None:
        for f, _ in self._open.values():
            f.close()
        self._open.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
