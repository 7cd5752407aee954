"""The face-detection front-end: one ingest row per detected face.

Conformance-style checks against outside truth where there is one: the embedded sample's VGGFace2
part ships its own face boxes (`loose_bb_train.csv`, from dlib's HOG detector on the base photos),
which the detected faces must fall inside. The rest are consistency tests of pltd's accounting
(photos in + faces beyond the first = rows out + rejected rows) on real detectors, no stand-ins.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from pltd.pipeline import storage
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.reconcile import reconcile
from pltd.schemas import image_id
from pltd.stages.detect_faces import face_location, faces_beyond_first
from pltd.stages.ingest import ingest_partition, rows_in
from pltd.stages.readers.base import PLAN, Source, get_reader
from pltd.stages.readers.rows import IngestSettings

SETTINGS = IngestSettings()


def folder_source(root: Path, **options) -> Source:
    return Source("photos", "image_folder", str(root), type(get_reader("image_folder")).Options(**options))


def plan_of(root: Path, label_by_folder: bool = True) -> pa.Table:
    """The plan a listing makes: every file under root, its first folder as the identity."""
    items = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    labels = [i.split("/")[0] if label_by_folder and "/" in i else None for i in items]
    return pa.Table.from_pylist(
        [
            {"part": 0, "item": i, "offset": None, "label": lab, "bbox": None}
            for i, lab in zip(items, labels, strict=True)
        ],
        schema=PLAN,
    )


def loose_boxes(sample: Path) -> dict[str, list[float]]:
    with open(sample / "vggface2/bb_landmark/loose_bb_train.csv") as f:
        return {r["NAME_ID"]: [float(r[k]) for k in ("X", "Y", "W", "H")] for r in csv.DictReader(f)}


def inside(box, loose) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x, y, w, h = loose
    return x <= cx <= x + w and y <= cy <= y + h


def test_blazeface_finds_the_astronauts_and_the_lfw_photos_faces(sample_dir):
    root = Path(sample_dir) / "vggface2/train"
    plan = plan_of(root)
    acc, rej = ingest_partition(folder_source(root, detect="blazeface"), plan, SETTINGS)
    good = [i for i in plan.column("item").to_pylist() if not i.split("/")[1].startswith("bad_")]
    assert len(good) == 64  # astronaut (n000001), Grace Hopper (n000002), 14 LFW identities, 4 photos each
    rows = {r["source_path"].split("train/")[1]: r for r in acc.to_pylist()}
    assert sorted(rows) == sorted(good) and acc.num_rows == len(good)  # one face per photo, each found
    boxes = loose_boxes(Path(sample_dir))
    for item, r in rows.items():
        assert r["face_index"] == 0 and r["face_score"] > 0.5 and r["source_label"] == item.split("/")[0]
        assert r["image_id"] == image_id("photos", face_location(item, 0))
        assert inside(r["bbox"], boxes[item.rsplit(".", 1)[0]]), item
    assert sorted(rej.column("reason").to_pylist()) == ["decode_error", "empty_file", "not_an_image"]
    assert acc.num_rows + rej.num_rows == rows_in(plan, acc, rej) == plan.num_rows


def test_dlib_cnn_finds_the_astronaut_and_an_lfw_identity(sample_dir, tmp_path):
    root = tmp_path / "photos"
    for folder in ("n000001", "n000003"):  # the astronaut, LFW face 1
        (root / folder).mkdir(parents=True)
        for f in sorted((Path(sample_dir) / "vggface2/train" / folder).glob("0*.jpg")):
            (root / folder / f.name).write_bytes(f.read_bytes())
    acc, rej = ingest_partition(folder_source(root, detect="dlib_cnn"), plan_of(root), SETTINGS)
    boxes = loose_boxes(Path(sample_dir))
    assert acc.num_rows == 8 and rej.num_rows == 0
    for r in acc.to_pylist():
        item = r["source_path"].split("photos/")[1]
        assert r["face_index"] == 0 and r["face_score"] > 0 and inside(r["bbox"], boxes[item.rsplit(".", 1)[0]])


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def crowd(sample_dir, tmp_path) -> Path:
    """pair.jpg: two sample faces side by side; blank.jpg: no face; small.jpg: a face shrunk to ~50 px."""
    train = Path(sample_dir) / "vggface2/train"
    a = Image.open(train / "n000001/0001_01.jpg").convert("RGB")  # the astronaut
    b = Image.open(train / "n000004/0001_01.jpg").convert("RGB")  # an LFW face
    pair = Image.new("RGB", (a.width + b.width + 40, max(a.height, b.height)), (128, 128, 128))
    pair.paste(a, (0, 0))
    pair.paste(b, (a.width + 40, 0))
    root = tmp_path / "crowd"
    (root / "people").mkdir(parents=True)
    (root / "people/pair.jpg").write_bytes(_jpeg(pair))
    (root / "people/blank.jpg").write_bytes(_jpeg(Image.new("RGB", (200, 200), (90, 120, 150))))
    small = b.resize((b.width // 2, b.height // 2), Image.BILINEAR)
    canvas = Image.new("RGB", (240, 240), (128, 128, 128))
    canvas.paste(small, (60, 60))
    (root / "people/small.jpg").write_bytes(_jpeg(canvas))
    return root


def test_two_faces_give_two_rows_and_the_counts_reconcile(crowd):
    src, plan = folder_source(crowd, detect="blazeface", min_face_size=80), plan_of(crowd)
    acc, rej = ingest_partition(src, plan, SETTINGS)
    faces = acc.to_pylist()
    assert [r["face_index"] for r in faces] == [0, 1]  # both faces of pair.jpg, left to right
    assert faces[0]["bbox"][2] < faces[1]["bbox"][0] and faces[0]["image_id"] != faces[1]["image_id"]
    assert [r["image_id"] for r in faces] == [image_id("photos", face_location("people/pair.jpg", k)) for k in (0, 1)]
    assert {r["source_label"] for r in faces} == {"people"}  # identities per folder, as without detection
    why = {r["reason"]: r for r in rej.to_pylist()}
    assert sorted(why) == ["face_too_small", "no_face"]
    assert why["no_face"]["image_id"] == image_id("photos", "people/blank.jpg") and why["no_face"]["face_index"] is None
    assert why["face_too_small"]["face_index"] == 0 and "< min_face_size 80" in why["face_too_small"]["detail"]
    # 3 photos in; pair.jpg gave one face beyond its first: 3 + 1 = 2 faces out + 2 rejected
    assert faces_beyond_first(acc, rej) == 1 and acc.num_rows + rej.num_rows == rows_in(plan, acc, rej) == 4
    again, _ = ingest_partition(src, plan, SETTINGS)
    assert again.column("image_id").to_pylist() == acc.column("image_id").to_pylist()  # stable face ids


def test_the_runs_reconciliation_counts_faces_beyond_the_first(crowd, tmp_path):
    src, plan = folder_source(crowd, detect="blazeface", min_face_size=80), plan_of(crowd)
    acc, rej = ingest_partition(src, plan, SETTINGS)
    layout = RunLayout(str(tmp_path / "run"))
    storage.write_parquet(layout.output("ingest", "photos", 0), acc, {})
    storage.write_parquet(layout.rejected("ingest", "photos", 0), rej, {})
    report = reconcile(layout, {"photos": plan.num_rows}, "ingest", ["ingest"])
    s = report["sources"]["photos"]
    assert report["ok"] and (s["images_in"], s["faces_beyond_first"], s["accepted"], s["rejected"]) == (3, 1, 2, 2)


def test_detection_is_off_by_default(crowd):
    """Without `detect`: one row per photo, no box, null face columns, exactly as before."""
    acc, rej = ingest_partition(folder_source(crowd), plan_of(crowd), SETTINGS)
    assert acc.num_rows == 3 and rej.num_rows == 0
    assert set(acc.column("face_index").to_pylist()) == {None} and set(acc.column("bbox").to_pylist()) == {None}
    assert sorted(acc.column("image_id").to_pylist()) == sorted(
        image_id("photos", f"people/{n}.jpg") for n in ("blank", "pair", "small")
    )
