"""The test harness's own contract: a conformance test whose data or package is missing skips in a
plain clone, naming what is missing, and fails where the run requires it (`.ci/run` sets
PLTD_REQUIRE_CONFORMANCE). Consistency tests (pltd's harness vs its documented rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE, REQUIRE_CONFORMANCE, conformance_files, conformance_module


def test_a_missing_fixture_skips_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(REQUIRE_CONFORMANCE, raising=False)
    gone = tmp_path / "IBUG_image_008_1_0.mat"
    with pytest.raises(pytest.skip.Exception, match=f"{gone} not found .*{REQUIRE_CONFORMANCE}=1"):
        conformance_files(gone)
    with pytest.raises(pytest.skip.Exception, match="package pltd_no_such_package is not installed"):
        conformance_module("pltd_no_such_package", "pltd-no-such-package")


def test_a_missing_fixture_fails_where_conformance_is_required(tmp_path, monkeypatch):
    monkeypatch.setenv(REQUIRE_CONFORMANCE, "1")
    gone = tmp_path / "IBUG_image_008_1_0.mat"
    with pytest.raises(pytest.fail.Exception, match=f"{gone} not found.*{REQUIRE_CONFORMANCE} is set"):
        conformance_files(gone)
    with pytest.raises(pytest.fail.Exception, match="package pltd_no_such_package is not installed"):
        conformance_module("pltd_no_such_package", "pltd-no-such-package")
    present = tmp_path / "here.mat"
    present.write_bytes(b"")
    conformance_files(present)  # present files pass either way
    assert conformance_module("json", "json").dumps([1]) == "[1]"


def test_ci_requires_the_conformance_tests_and_the_folder_is_the_shared_one():
    root = Path(__file__).resolve().parents[1]
    assert f"export {REQUIRE_CONFORMANCE}=1" in (root / ".ci" / "run").read_text()
    assert root.parent / "shared" / "conformance" == CONFORMANCE
