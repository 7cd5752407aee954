"""The driver at scale: a plan listed on the workers, boxes joined per listing task, the `.idx` streamed.

Consistency tests (pltd vs pltd, and pltd vs the sorted listing the plan was defined by before it was
listed in parallel: every image path under the root, sorted, cut into partitions in that order).
Planning runs on a real LocalCluster (worker processes) as `pltd build` does.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pltd.pipeline import plan as plan_module
from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout, part_files, part_rows
from pltd.pipeline.plan import make_plan, read_partition, runs_of
from pltd.stages.readers import folders, insightface_rec
from pltd.stages.readers.base import IMAGE_EXTENSIONS, PlanStats, Source, get_reader, tree_entries
from pltd.stages.readers.folders import ImageFolderOptions, VGGFace2Options
from tests.pipeline import test_runner
from tests.stages.test_readers import write_insightface

dask_client = test_runner.client  # the runner tests' fixture: a LocalCluster of 2 worker processes

# Names whose order trips a per-folder concatenation: "a-b/…" and "a.jpg" sort before "a/…".
TREE = [
    "a/2.jpg", "a/1.png", "a/sub/0.jpg", "a-b/0.jpg", "a.b/x.jpg", "a b/y.jpg", "a.jpg", "a-b.jpg",
    "z/0.jpg", "z/notes.txt", "Z/0.jpg", "0/.hidden", "0/0.jpg", "b.jpg",
]  # fmt: skip


def make_tree(root, rels) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")  # planning never opens a file


def sorted_listing(root) -> list[str]:
    """The plan's definition: every image path under the root, sorted (what one `fs.find` gave)."""
    rels = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    return sorted(r for r in rels if r.lower().endswith(IMAGE_EXTENSIONS))


def plan_rows(run: str, source: str, parts: int) -> list[tuple[int, str, str | None]]:
    rows = []
    for p in range(parts):
        t = read_partition(run, source, p)
        rows += zip(
            t.column("part").to_pylist(), t.column("item").to_pylist(), t.column("label").to_pylist(), strict=True
        )
    return rows


def test_parallel_plan_is_the_sorted_listing_cut_in_partitions(tmp_path, dask_client, monkeypatch):
    monkeypatch.setattr(plan_module, "MAX_ENTRIES_PER_TASK", 2)  # many tasks of a few folders each
    root = tmp_path / "faces"
    make_tree(root, TREE)
    src = Source("faces", "image_folder", str(root), ImageFolderOptions())
    expected = sorted_listing(root)
    summary = make_plan(str(tmp_path / "run"), src, 5, dask_client)
    assert len(expected) == 12
    assert (summary["images"], summary["partitions"]) == (12, 3)
    assert summary["ignored"] == {"not_an_image_extension": 1}
    rows = plan_rows(str(tmp_path / "run"), "faces", 3)
    assert [item for _, item, _ in rows] == expected
    assert [part for part, _, _ in rows] == [i // 5 for i in range(12)]
    assert [lab for _, item, lab in rows if item == "a/sub/0.jpg"] == ["a"]
    f = pq.ParquetFile(RunLayout(str(tmp_path / "run")).plan("faces"))
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [5, 5, 2]
    assert not storage.exists(str(tmp_path / "run" / "plan" / "faces.work"))  # chunks removed once streamed
    # The same plan again (in this process, no cluster): identical rows and ids.
    again = make_plan(str(tmp_path / "run2"), src, 5)
    assert plan_rows(str(tmp_path / "run2"), "faces", again["partitions"]) == rows


def test_a_root_with_one_folder_is_opened_further(tmp_path):
    make_tree(tmp_path, [f"train/c{i}/{j}.jpg" for i in range(5) for j in range(2)] + ["train/top.jpg"])
    src = Source("s", "image_folder", str(tmp_path), ImageFolderOptions())
    entries = tree_entries(src, at_least=4)
    assert entries == [*((f"train/c{i}", True) for i in range(5)), ("train/top.jpg", False)]
    assert [len(r) for r in runs_of(entries, workers=1)] == [2, 2, 2]


def test_boxes_are_joined_per_task_from_parquet(tmp_path, dask_client, monkeypatch):
    monkeypatch.setattr(plan_module, "MAX_ENTRIES_PER_TASK", 1)
    classes = [f"n{c:06d}" for c in range(6)]
    rels = [f"{c}/{k:04d}_01.jpg" for c in classes for k in range(3)]
    make_tree(tmp_path / "train", rels)
    boxes = {r.rsplit(".", 1)[0]: (i, 2 * i, 10 + i, 20 + i) for i, r in enumerate(rels) if i % 4}  # some missing
    lines = ["NAME_ID,X,Y,W,H", *(f"{k},{x},{y},{w},{h}" for k, (x, y, w, h) in reversed(boxes.items()))]
    (tmp_path / "bb.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(folders, "BOX_ROW_GROUP", 2)  # many row groups, most skipped by each task
    src = Source("v", "vggface2", str(tmp_path / "train"), VGGFace2Options(boxes=str(tmp_path / "bb.csv")))
    run = str(tmp_path / "run")
    summary = make_plan(run, src, 5, dask_client)
    got = {}
    for p in range(summary["partitions"]):
        t = read_partition(run, "v", p)
        got.update(zip(t.column("item").to_pylist(), t.column("bbox").to_pylist(), strict=True))
    assert list(got) == rels
    for rel in rels:
        x, y, w, h = boxes.get(rel.rsplit(".", 1)[0], (None,) * 4)
        assert got[rel] == (None if x is None else [x, y, x + w, y + h]), rel


def test_boxes_file_without_its_columns_names_them(tmp_path):
    (tmp_path / "bb.csv").write_text("NAME,X,Y\nn1/a,1,2\n")
    with pytest.raises(Exception, match=r"bb.csv: missing columns \['H', 'NAME_ID', 'W'\]"):
        folders.boxes_to_parquet(str(tmp_path / "bb.csv"), str(tmp_path / "work"))


def test_idx_is_streamed_in_blocks(tmp_path, monkeypatch):
    labels = [k % 7 for k in range(200)]
    n = write_insightface(tmp_path, labels)
    whole = [(k, off) for k, off in (line.split("\t") for line in (tmp_path / "train.idx").read_text().splitlines())]
    monkeypatch.setattr(insightface_rec, "IDX_BLOCK", 64)  # a few records a block
    src = Source("r", "insightface_rec", str(tmp_path), get_reader("insightface_rec").Options())
    stats = PlanStats()
    tables = list(get_reader("insightface_rec").plan_streamed(src, stats))
    assert len(tables) > 10
    items = [
        (it, str(off)) for t in tables for it, off in zip(t["item"].to_pylist(), t["offset"].to_pylist(), strict=True)
    ]
    assert items == [(k, off) for k, off in whole if 1 <= int(k) < n]
    assert stats.ignored == {"rec_header_or_identity_record": 1 + len(set(labels))}


def test_idx_keys_out_of_order_are_planned_in_file_order(tmp_path):
    write_insightface(tmp_path, [0, 1, 1])
    lines = (tmp_path / "train.idx").read_text().splitlines()
    (tmp_path / "train.idx").write_text("\n".join([lines[0], lines[3], lines[1], lines[2], *lines[4:]]) + "\n")
    src = Source("r", "insightface_rec", str(tmp_path), get_reader("insightface_rec").Options())
    items = [r["item"] for r in get_reader("insightface_rec").plan_items(src, PlanStats())]
    assert items == ["3", "1", "2"]


@pytest.mark.parametrize("tail", [64, storage.FOOTER_TAIL])  # 64: every footer needs its second, exact request
def test_footers_are_read_in_batches(tmp_path, monkeypatch, tail):
    monkeypatch.setattr(storage, "FOOTER_TAIL", tail)
    schema = pa.schema([("a", pa.int64())])
    for i, n in enumerate([5, 20_000, 0]):
        storage.write_parquet(
            str(tmp_path / "s" / f"part-{i:05d}.parquet"), pa.table({"a": range(n)}, schema), row_group_rows=100
        )
    assert part_rows(str(tmp_path / "s")) == 20_005
    assert [m.num_row_groups for m in storage.footers(part_files(str(tmp_path / "s")))] == [1, 200, 1]
    (tmp_path / "s" / "part-00009.parquet").write_bytes(b"cut")
    with pytest.raises(OSError, match="part-00009.parquet: not a Parquet file"):
        part_rows(str(tmp_path / "s"))
