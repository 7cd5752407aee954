"""The run's layout: every path, completion from one listing, the one way to list and read part files.

Consistency tests (pltd vs its own documented layout); they run on `memory://` (an fsspec URL, as
an object store would be) and on a local folder.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout, part_files, part_number, part_rows, read_parts
from pltd.pipeline.partition import PartitionTask


@pytest.fixture(params=["memory", "local"])
def run(request, tmp_path) -> str:
    return f"memory://runs/{uuid.uuid4().hex}" if request.param == "memory" else str(tmp_path / "run")


def test_every_path_of_a_run():
    lay = RunLayout("s3://bucket/run")
    assert lay.output("landmarks", "vgg", 17) == "s3://bucket/run/landmarks/vgg/part-00017.parquet"
    assert lay.rejected("landmarks", "vgg", 17) == "s3://bucket/run/rejected/landmarks/vgg/part-00017.parquet"
    assert lay.marker("landmarks", "vgg", 17) == "s3://bucket/run/landmarks/vgg/_done/part-00017.json"
    assert lay.plan("vgg") == "s3://bucket/run/plan/vgg.parquet" and lay.plan_marker("vgg").endswith("plan/vgg.json")
    assert lay.global_marker("identities") == "s3://bucket/run/identities/_done.json"
    assert lay.shard(3) == "s3://bucket/run/pltd/part-00003.parquet"
    assert lay.dataset_json == "s3://bucket/run/pltd/dataset.json" and lay.stats("ingest").endswith(
        "/stats/ingest.json"
    )
    assert lay.owned_by("ingest") == [
        "s3://bucket/run/ingest",
        "s3://bucket/run/rejected/ingest",
        "s3://bucket/run/stats/ingest.json",
    ]
    task = PartitionTask("s3://bucket/run", "landmarks", "vgg", 17)  # the runner's task uses the same paths
    assert (task.output, task.rejected, task.marker) == (
        lay.output("landmarks", "vgg", 17),
        lay.rejected("landmarks", "vgg", 17),
        lay.marker("landmarks", "vgg", 17),
    )


@pytest.mark.parametrize(
    ("name", "part"),
    [("part-00017.parquet", 17), ("part-00017.json", 17), ("a/b/part-99999.parquet", 99999),
     ("part-00017.parquet.tmp-1a2b3c4d", None), ("dataset.json", None), ("part-x.parquet", None)],
)  # fmt: skip
def test_part_number(name, part):
    assert part_number(name) == part


def test_complete_parts_come_from_the_markers(run):
    lay = RunLayout(run)
    assert lay.complete_parts("ingest", "faces") == set()  # no folder yet: nothing complete
    for p in (0, 2, 11):
        storage.write_json(lay.marker("ingest", "faces", p), {"part": p})
    storage.write_json(lay.marker("ingest", "other", 5), {"part": 5})
    fs, path = storage.fs_path(lay.marker_dir("ingest", "faces"))
    fs.pipe_file(path + "/part-00003.json.tmp-deadbeef", b"{")  # a marker being written is not a marker
    assert lay.complete_parts("ingest", "faces") == {0, 2, 11}


def test_part_files_skip_markers_and_temporaries_and_read_back(run):
    lay = RunLayout(run)
    for source, part, n in (("a", 1, 3), ("a", 0, 2), ("b", 0, 4)):
        storage.write_parquet(lay.output("ingest", source, part), pa.table({"x": list(range(n))}))
        storage.write_json(lay.marker("ingest", source, part), {})
    fs, path = storage.fs_path(lay.stage_dir("ingest", "a"))
    fs.pipe_file(path + "/part-00007.parquet.tmp-0badf00d", b"half a file")
    files = part_files(lay.stage_dir("ingest"))
    assert [f.rsplit("/", 2)[-2:] for f in files] == [["a", "part-00000.parquet"], ["a", "part-00001.parquet"],
                                                      ["b", "part-00000.parquet"]]  # fmt: skip
    assert read_parts(lay.stage_dir("ingest", "a")).column("x").to_pylist() == [0, 1, 0, 1, 2]
    assert part_rows(lay.stage_dir("ingest")) == 9
    assert read_parts(lay.stage_dir("landmarks")) is None
    empty = read_parts(lay.stage_dir("landmarks"), schema=pa.schema([("x", pa.int64())]))
    assert empty.num_rows == 0 and empty.schema.names == ["x"]
