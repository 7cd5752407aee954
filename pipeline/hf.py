"""The PLTD typed for Hugging Face `datasets`: the JPEG column is an `Image`, the vectors fixed-length.

The card's YAML front matter (`RUN/pltd/README.md`) says so — `dataset_info.features` and `configs`
with `data_files`, what `load_dataset("RUN/pltd")` and the Hub read; `datasets` then casts the
`binary` JPEG column to `Image` as it loads.

Not in the shards' Parquet metadata (key `huggingface`): `datasets` 5.x applies a feature from there
only when the column's Arrow type is that feature's own storage (`struct<bytes, path>` for an
`Image`), and the PLTD's `image` is plain `binary` — what pyarrow, pandas, polars, DuckDB and the
trainer read. So `load_dataset("parquet", data_files=…)` gives bytes; loading the folder, or passing
`features=datasets.Features.from_dict(features(PLTD))`, gives images (README, "The PLTD").

Written by hand rather than with `datasets.Features` (a development dependency only: building a
PLTD must not need it). The forms are the long-standing ones — `Sequence` with `length` in JSON,
`sequence:` in YAML — which `datasets` 5.x reads as `List`; `tests/pipeline/test_hf.py` loads real
shards and a real card with the installed `datasets`.
"""

from __future__ import annotations

import pyarrow as pa

IMAGE_COLUMNS = ("image",)  # binary columns holding an encoded image


def _value_dtype(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return str(t)  # int8 … int64, float32, float64, bool: Arrow's names are datasets' dtypes


def _feature(name: str, t: pa.DataType) -> dict:
    if name in IMAGE_COLUMNS:
        return {"_type": "Image"}
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
        length = t.list_size if pa.types.is_fixed_size_list(t) else -1
        return {"feature": _feature("", t.value_type), "length": length, "_type": "Sequence"}
    return {"dtype": _value_dtype(t), "_type": "Value"}


def features(schema: pa.Schema) -> dict[str, dict]:
    """`datasets.Features.to_dict()` of `schema`, with the image columns as `Image`."""
    return {f.name: _feature(f.name, f.type) for f in schema}


def _yaml_feature(name: str, f: dict) -> dict:
    if f["_type"] == "Image":
        return {"name": name, "dtype": "image"}
    if f["_type"] == "Sequence":
        out = {"name": name, "sequence": f["feature"]["dtype"]}
        return out | ({"length": f["length"]} if f["length"] >= 0 else {})
    return {"name": name, "dtype": f["dtype"]}


def front_matter(schema: pa.Schema, rows: int, data_files: str = "part-*.parquet") -> dict:
    """The card's YAML header: one `default` config (split `train`) and the features."""
    feats = [_yaml_feature(name, f) for name, f in features(schema).items()]
    return {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_files}]}],
        "dataset_info": {"features": feats, "splits": [{"name": "train", "num_examples": rows}]},
        "task_categories": ["image-classification", "keypoint-detection"],
        "tags": ["faces", "facial-landmarks", "head-pose", "pseudo-labels", "pltd"],
    }
