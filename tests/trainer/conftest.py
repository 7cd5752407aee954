"""Trainer fixtures: `pltd`, a tiny learnable PLTD (48 rows of 9 identities in 2 shards)."""

from __future__ import annotations

import json

import pytest


def face_shards(d, n_shards=2, rows=24, group=8) -> None:
    """A learnable tiny PLTD: a projected mean face at a random small pose, its points drawn as dots."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image, ImageDraw

    from pltd.pose import project, rotation
    from pltd.schemas import PLTD
    from pltd.stages.landmarks.mean_face import load_mean_face

    rng, face, k = np.random.default_rng(0), load_mean_face(), 0
    for s in range(n_shards):
        recs = []
        for _ in range(rows):
            pose = rng.uniform(-25, 25, 3)
            pts = project(face, rotation(*pose), 22.0, np.array([48.0, 52.0]))
            img = Image.fromarray(rng.integers(0, 60, (104, 96, 3), dtype=np.uint8))
            draw = ImageDraw.Draw(img)
            for x, y in pts:
                draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 255))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=95)
            recs.append({"image_id": f"f{k}", "source": "syn", "source_label": str(k % 9), "face_id": k % 9,
                         "image": buf.getvalue(), "width": 96, "height": 104, "bbox": [*pts.min(0), *pts.max(0)],
                         "landmarks": pts.ravel().tolist(), "pose": pose.tolist(),
                         "label_kind": "ground_truth" if k % 3 == 0 else "pseudo",
                         "n_samples": 3, "fit_error": 0.01, "eye_closed": [0.0, 0.0], "source_path": "x"})  # fmt: skip
            k += 1
        pq.write_table(pa.Table.from_pylist(recs, schema=PLTD), d / f"part-{s:05d}.parquet", row_group_size=group)


@pytest.fixture
def pltd(tmp_path):
    d = tmp_path / "pltd"
    d.mkdir()
    face_shards(d)
    (d / "dataset.json").write_text(json.dumps({"identities": 9}))
    return d
