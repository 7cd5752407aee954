"""The embeddings stage over one partition: two networks' vectors for every labelled image.

Input: the partition's landmarks rows (for alignment) joined with its ingest rows (for the image
and its identity). Output one row per image with both embeddings, L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pltd.schemas import EMBEDDINGS, REJECTED
from pltd.stages.fetch import Fetcher
from pltd.stages.identities.centroids import vectors
from pltd.stages.identities.networks import cached_network
from pltd.stages.images import ImageProblem, decode_rgb
from pltd.stages.problems import reason_of, rejected_row

STAGE = "embeddings"


@dataclass(frozen=True)
class EmbedSettings:
    networks: tuple[str, str] = ("dlib", "dlib")
    checkpoints: tuple[str | None, str | None] = (None, None)
    architectures: tuple[str | None, str | None] = (None, None)  # insightface: iresnet18 … iresnet100
    onnx: tuple = (None, None)  # onnx: an OnnxAdapter each (None: insightface's preset)
    batch_images: int = 64


def identity_of(row: dict) -> str:
    """The source's identity of an image: its label, else its base photo, else the image itself."""
    if row.get("source_label") is not None:
        return row["source_label"]
    if row.get("base_id") is not None:
        return row["base_id"]
    return f"image:{row['image_id']}"


def networks_for(s: EmbedSettings):
    specs = zip(s.networks, s.checkpoints, s.architectures, s.onnx, strict=True)
    return [cached_network(name, ckpt, arch, adapter) for name, ckpt, arch, adapter in specs]


def embed_partition(ingest: pa.Table, landmarks: pa.Table, s: EmbedSettings) -> tuple[pa.Table, pa.Table]:
    """Embed every landmarks row; rows whose image cannot be read again are rejected."""
    nets = networks_for(s)
    where = {r["image_id"]: r for r in ingest.to_pylist()}
    out: dict[str, list] = {f.name: [] for f in EMBEDDINGS}
    rej: list[dict] = []
    rows = landmarks.select(["image_id", "source", "landmarks"]).to_pylist()
    with Fetcher() as fetch:
        for i in range(0, len(rows), s.batch_images):
            images, lms, keep = [], [], []
            for r in rows[i : i + s.batch_images]:
                src = where[r["image_id"]]
                try:
                    images.append(decode_rgb(fetch.bytes_of(src)))
                except (ImageProblem, OSError) as exc:
                    rej.append(rejected_row(src, STAGE, *reason_of(exc)))
                    continue
                lms.append(np.asarray(r["landmarks"], float))
                keep.append(src)
            vecs: list[np.ndarray] = []
            for k, net in enumerate(nets):  # the same network twice (the offline sample) runs once
                same = [m for m in range(k) if nets[m] is net]
                vecs.append(vecs[same[0]] if same else net(images, lms))
            for j, src in enumerate(keep):
                out["image_id"].append(src["image_id"])
                out["source"].append(src["source"])
                out["source_label"].append(identity_of(src))
                out["emb_0"].append(vecs[0][j])
                out["emb_1"].append(vecs[1][j])
    table = pa.table(
        {
            "image_id": pa.array(out["image_id"], pa.string()),
            "source": pa.array(out["source"], pa.string()),
            "source_label": pa.array(out["source_label"], pa.string()),
            "emb_0": _stack(out["emb_0"]),
            "emb_1": _stack(out["emb_1"]),
        },
        schema=EMBEDDINGS,
    )
    return table, pa.Table.from_pylist(rej, schema=REJECTED)


def _stack(vs: list[np.ndarray]) -> pa.Array:
    return vectors(np.stack(vs)) if vs else pa.array([], pa.list_(pa.float32()))
