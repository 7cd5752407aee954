"""The manual: it builds with `mkdocs build --strict` (broken links, missing pages, a reference that
does not resolve fail), its field tables match the pydantic models, and its CLI reference is the app's.

Consistency tests (the documentation against pltd's own code).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "docs" / "manifests.md"
MARKER = re.compile(r"<!-- fields: ([\w.]+):(\w+) -->\n(\|.*?)(?:\n\n|\Z)", re.S)


def _tables() -> list[tuple[str, str, str]]:
    return MARKER.findall(MANIFESTS.read_text())


def _rows(table: str) -> dict[str, str]:
    """`field` → default cell of a `| field | default | meaning |` table."""
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    return rows


def _default(field):
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_fields"):  # a nested section: documented in its own table
        return "(section)"
    return list(value) if isinstance(value, tuple) else value


def test_every_section_model_has_a_table():
    from pltd.pipeline.config import Manifest

    documented = {cls for _, cls, _ in _tables()}
    sections = {"Manifest", "SourceConfig", "IdentitiesConfig"}
    sections |= {type(f.get_default(call_default_factory=True)).__name__ for f in Manifest.model_fields.values()}
    sections -= {"NoneType", "PydanticUndefinedType", "list"}
    assert sections <= documented, sections - documented


@pytest.mark.parametrize("module,cls,table", _tables(), ids=lambda v: v if isinstance(v, str) and "|" not in v else "")
def test_field_table_matches_the_model(module, cls, table):
    model = getattr(importlib.import_module(module), cls)
    rows = _rows(table)
    assert sorted(rows) == sorted(model.model_fields), f"{cls}: fields in the manual vs the model"
    for name, field in model.model_fields.items():
        want = _default(field)
        cell = rows[name]
        got = cell if cell in ("required", "(section)") else yaml.safe_load(cell)
        assert got == want, f"{cls}.{name}: the manual says {cell!r}, the model's default is {want!r}"


def test_reader_options_of_every_format_are_documented():
    from pltd.pipeline.config import get_reader, known_formats

    documented = {cls for _, cls, _ in _tables()}
    for fmt in known_formats():
        options = type(get_reader(fmt)).Options
        if options.model_fields:
            assert options.__name__ in documented, fmt


@pytest.mark.slow
def test_manual_builds_strict(tmp_path):
    """`make docs`: mkdocs build --strict; the CLI reference holds every command of the app."""
    from typer.main import get_command

    from pltd.pipeline.cli import app

    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    reference = (site / "cli-reference" / "index.html").read_text()
    for name in get_command(app).commands:
        assert f"pltd {name}" in reference, name
    assert "--cluster-file" in reference
    api = (site / "api" / "index.html").read_text()
    assert "PLTDDataset" in api and "set_epoch" in api
