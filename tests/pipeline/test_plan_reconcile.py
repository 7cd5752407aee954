"""Planning (fixed partition ids, one row group per partition, reuse) and reconciliation from the files.

Consistency tests: pltd's plan and account against what the tests wrote (counted by hand).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.plan import make_plan, read_partition
from pltd.pipeline.reconcile import reconcile
from pltd.schemas import REJECTED
from pltd.stages.readers.base import Source
from pltd.stages.readers.folders import ImageFolderOptions
from tests.helpers import jpeg_bytes


def folder(tmp_path, n: int) -> Source:
    root = tmp_path / "faces"
    for i in range(n):
        d = root / f"id{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:03d}.jpg").write_bytes(jpeg_bytes((16, 16), seed=i))
    (root / "notes.txt").write_text("not an image")
    return Source("faces", "image_folder", str(root), ImageFolderOptions())


def test_plan_fixes_partitions_one_row_group_each_and_is_reused(tmp_path):
    src, run = folder(tmp_path, 11), str(tmp_path / "run")
    plan = make_plan(run, src, 4)
    assert (plan["images"], plan["partitions"], plan["ignored"]) == (11, 3, {"not_an_image_extension": 1})
    f = pq.ParquetFile(RunLayout(run).plan("faces"))
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [4, 4, 3]
    parts = [read_partition(run, "faces", p) for p in range(3)]
    items = [i for t in parts for i in t.column("item").to_pylist()]
    assert items == sorted(items) and len(set(items)) == 11  # every image once, in a fixed order
    assert set(parts[2].column("part").to_pylist()) == {2}
    (tmp_path / "faces" / "id0" / "new.jpg").write_bytes(jpeg_bytes((16, 16)))
    assert make_plan(run, src, 4) == plan  # a complete plan is reused: ids never move on a rerun


def test_a_plan_without_its_marker_is_made_again(tmp_path):
    src, run = folder(tmp_path, 5), str(tmp_path / "run")
    make_plan(run, src, 2)
    storage.remove(RunLayout(run).plan_marker("faces"))  # killed before the marker: not complete
    (tmp_path / "faces" / "id0" / "new.jpg").write_bytes(jpeg_bytes((16, 16)))
    assert make_plan(run, src, 2)["images"] == 6


def rejected(stage: str, reasons: list[str]) -> pa.Table:
    rows = [{"image_id": f"{stage}{i}", "source": "s", "stage": stage, "reason": r} for i, r in enumerate(reasons)]
    return pa.Table.from_pylist(rows, schema=REJECTED)


@pytest.fixture
def run_dir(tmp_path) -> RunLayout:
    """10 images in 2 partitions: ingest rejects 2, landmarks 1 more; 7 land in landmarks/."""
    lay = RunLayout(str(tmp_path / "run"))
    storage.write_parquet(lay.output("ingest", "s", 0), pa.table({"image_id": list("abcd")}))
    storage.write_parquet(lay.output("ingest", "s", 1), pa.table({"image_id": list("efgh")}))
    storage.write_parquet(lay.rejected("ingest", "s", 1), rejected("ingest", ["empty_file", "decode_error"]))
    storage.write_parquet(lay.output("landmarks", "s", 0), pa.table({"image_id": list("abc")}))
    storage.write_parquet(lay.output("landmarks", "s", 1), pa.table({"image_id": list("efgh")}))
    storage.write_parquet(lay.rejected("landmarks", "s", 0), rejected("landmarks", ["no_face"]))
    storage.write_json(lay.marker("landmarks", "s", 0), {"rows_out": 999})  # markers are not counted
    return lay


def test_reconciliation_counts_the_files(run_dir):
    rep = reconcile(run_dir, {"s": 10}, "landmarks", ["ingest", "landmarks"])
    s = rep["sources"]["s"]
    assert (s["accepted"], s["rejected"], s["balanced"], rep["ok"]) == (7, 3, True, True)
    assert s["rejected_by_reason"] == {"ingest:decode_error": 1, "ingest:empty_file": 1, "landmarks:no_face": 1}
    assert rep["total"] == {"images_in": 10, "accepted": 7, "rejected": 3}


def test_a_lost_partition_does_not_reconcile(run_dir):
    storage.remove(run_dir.output("landmarks", "s", 1))  # 4 rows gone: the account shows it
    rep = reconcile(run_dir, {"s": 10}, "landmarks", ["ingest", "landmarks"])
    assert not rep["ok"] and rep["sources"]["s"]["accepted"] == 3 and not rep["sources"]["s"]["balanced"]
