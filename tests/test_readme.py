"""The README's examples run: its YAML manifest blocks validate, and the `pltd` commands it names exist.

A consistency test of the documentation against the code: a README manifest example once was not
valid YAML and nothing caught it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _text() -> str:
    """The README and every page of the manual, one after the other."""
    return "\n".join(p.read_text() for p in [README, *DOCS])


def _blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(_text()) if lang == kind]


def test_readme_has_yaml_blocks():
    assert any("sources:" in b for b in _blocks("yaml"))


@pytest.mark.parametrize("block", _blocks("yaml"), ids=lambda b: b.splitlines()[0][:40])
def test_yaml_blocks_parse_and_manifests_validate(block, tmp_path):
    doc = yaml.safe_load(block)
    assert isinstance(doc, dict)
    if "sources" not in doc:
        return
    from pltd.pipeline.config import load_manifest

    path = tmp_path / "m.yaml"
    path.write_text(block)
    variables = set(re.findall(r"\$\{(\w+)", block))
    manifest = load_manifest(path, env={v: f"/data/{v.lower()}" for v in variables})
    assert [s.name for s in manifest.sources] == [s["name"] for s in doc["sources"]]


def _commands() -> set[str]:
    from typer.main import get_command

    from pltd.pipeline.cli import app

    group = get_command(app)
    names = set()
    for name, cmd in group.commands.items():
        names.add(name)
        for sub in getattr(cmd, "commands", {}):
            names.add(f"{name} {sub}")
    return names


def test_commands_named_in_the_readme_exist():
    known = _commands()
    named = set()
    for lang, body in BLOCK.findall(_text()):
        if lang not in ("", "bash", "sh", "console"):
            continue
        for line in body.splitlines():
            m = re.match(r"\s*(?:\S*/)?pltd\s+([a-z][a-z0-9-]*)(?:\s+([a-z][a-z0-9-]*))?", line)
            if m:
                named.add(m.group(1) if f"{m.group(1)} {m.group(2)}" not in known else f"{m.group(1)} {m.group(2)}")
    assert named, "the README and the manual name no pltd command"
    assert sorted(n for n in named if n.split()[0] not in known) == []


def _options_of(path: str) -> set[str]:
    """Every option string of `pltd PATH` (e.g. 'build', 'eval ijbc') and of the group itself."""
    from typer.main import get_command

    from pltd.pipeline.cli import app

    cmd = group = get_command(app)
    for part in path.split():
        cmd = cmd.commands[part]
    opts = {"--help"}
    for c in (group, cmd):
        for p in c.params:
            opts |= set(getattr(p, "opts", [])) | set(getattr(p, "secondary_opts", []))
    return opts


def test_flags_named_in_the_readme_exist():
    """Each `--flag` on a README line that runs `pltd CMD` (and its indented continuation lines) is an
    option of that command or of `pltd` itself (`-v`, `-q`, `--version`)."""
    known = _commands()
    missing = []
    for lang, body in BLOCK.findall(_text()):
        if lang not in ("", "bash", "sh", "console"):
            continue
        command = None
        for line in body.splitlines():
            m = re.match(r"\s*(?:\S*/)?pltd\s+(?:-[vq]\s+)?([a-z][a-z0-9-]*)(?:\s+([a-z][a-z0-9-]*))?", line)
            if m:
                two = f"{m.group(1)} {m.group(2)}"
                command = two if two in known else m.group(1) if m.group(1) in known else None
            elif not line.startswith((" ", "\t")):
                command = None
            if command is None:
                continue
            code = line.split("#", 1)[0]
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[vq])\b", code):
                if flag not in _options_of(command):
                    missing.append(f"pltd {command} {flag}")
    assert missing == []


def test_readme_stands_alone():
    """No link to a document outside the repository (the README is read without the workspace around
    it; it once sent readers to ../shared/ARCHITECTURE.md)."""
    text = README.read_text()
    assert re.findall(r"\.\./[\w./-]+\.md\b", text) == []
    assert re.findall(r"\]\(\.\./", text) == []


def test_readme_is_a_front_door():
    """The README stays short (the manual holds the rest) and links into the manual's pages."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for page in ("getting-started", "manifests", "clusters", "pltd-format", "labels"):
        assert f"(docs/{page}.md" in text


def test_readme_manifest_is_the_paper_manifest():
    """The one-screen manifest in the README is manifests/paper.yaml (comments aside)."""
    shown = [yaml.safe_load(b) for b in _blocks_of(README, "yaml")]
    assert yaml.safe_load((REPO / "manifests" / "paper.yaml").read_text()) in shown


def _blocks_of(path: Path, kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(path.read_text()) if lang == kind]


def test_no_narration_in_the_documents():
    """Figures state the machine by its specs; no narration of a day's conditions, no issue numbers."""
    for path in [README, *DOCS]:
        found = re.findall(r"engineers|load average|issue [0-9]", path.read_text(), re.I)
        assert found == [], path.name
