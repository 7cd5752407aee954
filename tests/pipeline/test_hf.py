"""The PLTD in Hugging Face `datasets`: the card's front matter types the JPEG column as an `Image`
and the vectors as fixed-length sequences.

Conformance tests against the installed `datasets` (the outside truth of what an HF user gets): the
shard and the card are written by pltd's own code (`shards.write_shard`, `card.write_card`), then read
by `datasets.load_dataset` exactly as a user would.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pltd.pipeline import storage
from pltd.pipeline.card import summarize, write_card
from pltd.pipeline.hf import features, front_matter
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.shards import write_shard
from pltd.schemas import PLTD
from tests.helpers import conformance_module

datasets = conformance_module("datasets", "datasets")  # the Hugging Face reader the shards must satisfy


def _rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40 + i, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
        rows.append({
            "image_id": f"id{i}", "source": "vggface2" if i % 2 else "300w_lp", "source_label": f"n{i // 2}",
            "face_id": i // 2, "image": buf.getvalue(), "width": 32, "height": 40 + i,
            "bbox": [1.0, 2.0, 30.0, 38.0], "landmarks": rng.uniform(0, 30, 136).tolist(),
            "pose": [10.0 * i, -5.0, 2.0], "label_kind": "pseudo" if i % 2 else "ground_truth",
            "n_samples": 3 if i % 2 else 0, "fit_error": 0.01 if i % 2 else float("nan"),
            "eye_closed": [0.0, 0.1], "source_path": f"/data/{i}.jpg", "visible": [True] * 68,
        })  # fmt: skip
    return rows


@pytest.fixture
def pltd_dir(tmp_path):
    """A PLTD folder written the way `publish` writes one: a staging file, a shard task, the card."""
    layout = RunLayout(str(tmp_path / "run"))
    staging = layout.output("assemble", "all", 0)
    storage.write_parquet(staging, pa.Table.from_pylist(_rows(6), schema=PLTD))
    write_shard(layout.shard(0), [(staging, 0, 6)], PLTD, 1000, {"stage": "pltd"})
    dataset = {"manifest": "t", "shards": [{"shard": "part-00000.parquet", "rows": 6}], "schema_version": "1",
               "pltd_version": "x", "settings_hash": "h"}  # fmt: skip
    write_card(layout, summarize(layout), {"sources": {}}, None, dataset)
    return tmp_path / "run" / "pltd"


def test_parquet_shards_load_as_bytes_or_with_pltd_features_as_images(pltd_dir):
    """What the README and the card promise for the plain Parquet loader (`hf.py` says why)."""
    shard = str(pltd_dir / "part-00000.parquet")
    plain = datasets.load_dataset("parquet", data_files=[shard], split="train")
    assert plain.features["image"] == datasets.Value("binary")
    typed = datasets.Features.from_dict(features(PLTD))
    ds = datasets.load_dataset("parquet", data_files=[shard], split="train", features=typed)
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["landmarks"].length == 136 and ds.features["pose"].length == 3
    first = ds[1]["image"]
    assert isinstance(first, Image.Image) and first.size == (32, 41)
    assert pq.read_schema(shard).field("image").type == pa.binary()  # pyarrow, pandas, DuckDB: still bytes


def test_the_card_loads_in_datasets_with_an_image_feature(pltd_dir):
    card = (pltd_dir / "README.md").read_text()
    assert card.startswith("---\n")
    head = yaml.safe_load(card.split("---\n")[1])
    assert head["configs"][0]["data_files"][0]["path"] == "part-*.parquet"
    ds = datasets.load_dataset(str(pltd_dir), split="train")
    assert isinstance(ds.features["image"], datasets.Image) and ds.num_rows == 6
    assert ds.features["source"] == datasets.Value("string") and ds[0]["pose"][0] == 0.0
    assert ds[5]["image"].size == (32, 45)


def test_front_matter_features_equal_the_features_dict():
    """Consistency: the card's YAML and `features()` describe the same features, every PLTD column."""
    from_yaml = datasets.Features._from_yaml_list(front_matter(PLTD, 0)["dataset_info"]["features"])
    from_dict = datasets.Features.from_dict(features(PLTD))
    assert from_yaml == from_dict and list(from_dict) == PLTD.names
    assert isinstance(from_dict["image"], datasets.Image) and from_dict["landmarks"].length == 136
