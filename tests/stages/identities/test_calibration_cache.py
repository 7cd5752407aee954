"""Calibration on a real Dask cluster with dlib's descriptor: one model configured twice embeds the
pairs once; a rerun reads the cached cosines and embeds nothing (consistency tests)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image
from rich.console import Console

from pltd.pipeline.config import IdentitiesConfig
from pltd.pipeline.identities_calibration import CHUNK_PAIRS, cache_dir, calibrate_thresholds
from pltd.stages.identities.calibrate import save_bin


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).resize((150, 150)).save(buf, format="JPEG")
    return buf.getvalue()


class Counting:
    """The real client, counting the tasks submitted through it."""

    def __init__(self, client):
        self.client, self.submitted = client, 0

    def submit(self, *a, **kw):
        self.submitted += 1
        return self.client.submit(*a, **kw)


@pytest.fixture
def pair_file(tmp_path):
    face = skimage.data.astronaut()[60:190, 160:280]
    other = np.repeat(skimage.data.camera()[40:200, 180:320, None], 3, axis=2)
    bins, same = [], []
    for k in range(CHUNK_PAIRS + 2):  # two chunks
        shifted = face[k % 3 :, k % 4 :]
        bins += [_jpeg(face), _jpeg(shifted if k % 2 == 0 else other)]
        same.append(k % 2 == 0)
    save_bin(tmp_path / "pairs.bin", bins, same)
    return tmp_path / "pairs.bin"


def test_same_model_embeds_once_and_a_rerun_hits_the_cache(tmp_path, pair_file, monkeypatch):
    from distributed import Client

    monkeypatch.setenv("PLTD_CACHE", str(tmp_path / "cache"))
    cfg = IdentitiesConfig(networks=["dlib", "dlib"], calibration_pairs=str(pair_file))
    out = io.StringIO()
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        counting = Counting(client)
        first = calibrate_thresholds(counting, cfg, Console(file=out, width=200))
    assert counting.submitted == 2  # two chunks of pairs, once: the second network is the same model
    assert "calibration: dlib embeds 12 pairs" in out.getvalue()  # progress is shown
    assert first["one_network"] and [c["cache"] for c in first["networks"]] == ["embedded", "embedded"]
    assert len(list(cache_dir().glob("*.npz"))) == 1
    # the rerun needs no cluster at all: passing none proves nothing is embedded
    again = calibrate_thresholds(None, cfg, Console(file=io.StringIO()))
    assert [c["cache"] for c in again["networks"]] == ["cache hit", "cache hit"]
    assert again["thresholds"] == first["thresholds"]
    # the same pairs re-embedded give the same cosines the cache holds: the face pairs are near 1
    assert first["networks"][0]["tar"] == 1.0
