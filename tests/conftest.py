"""Shared fixtures: the embedded sample (made once per session) and small image files."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("PLTD_WORKERS", "2")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    from pltd.pipeline.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample"))


def jpeg_bytes(size=(64, 48), mode="RGB", seed=0, **save) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode=None).convert(mode).save(buf, format="JPEG", **save)
    return buf.getvalue()
