"""Shared fixtures: the embedded sample (made once per session). Helpers live in `tests/helpers.py`."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PLTD_WORKERS", "2")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    from pltd.pipeline.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample"))
