"""The build's steps without a cluster: which stages run, start-up checks, settings refusal, --force.

Consistency tests (pltd's stage declarations and build steps against the README's rules).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rich.console import Console

from pltd.pipeline import storage
from pltd.pipeline.build import StartupError, check, prepare, sources_of, stages_to_run
from pltd.pipeline.catalog import STAGE_NAMES, STAGES, Landmarks
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.stage import BuildContext, Stage
from pltd.stages.landmarks.settings import LandmarkSettings


def manifest(tmp_path, **sections) -> Manifest:
    (tmp_path / "faces").mkdir(exist_ok=True)
    src = {"name": "faces", "format": "image_folder", "root": str(tmp_path / "faces"), "allow_empty": True}
    return Manifest.model_validate({"name": "t", "sources": [src], **sections})


def context(tmp_path, m: Manifest) -> BuildContext:
    return BuildContext(m, RunLayout(str(tmp_path / "run")), Console(quiet=True), sources_of(m))


IDENT = {"networks": ["dlib", "dlib"], "thresholds": [0.5, 0.5]}


def test_the_catalog_order_and_which_stages_run(tmp_path):
    assert STAGE_NAMES == ("ingest", "landmarks", "embeddings", "identities", "assemble")
    bare = manifest(tmp_path)
    assert [s.name for s in stages_to_run(bare, None)] == ["ingest", "landmarks", "assemble"]
    assert [s.name for s in stages_to_run(manifest(tmp_path, identities=IDENT), None)] == list(STAGE_NAMES)
    assert [s.name for s in stages_to_run(bare, "landmarks")] == ["ingest", "landmarks"]
    with pytest.raises(StartupError, match="--until landmark: unknown stage"):
        stages_to_run(bare, "landmark")


def test_stage_settings_are_the_manifest_sections(tmp_path):
    m = manifest(tmp_path, landmarks={"views": 4})
    by_name = {s.name: s for s in STAGES}
    assert by_name["landmarks"].settings(m) is m.landmarks and m.landmarks.views == 4
    assert LandmarkSettings() == Manifest.model_fields["landmarks"].default  # one definition of the defaults
    assert by_name["ingest"].settings(m) is m.ingest and by_name["assemble"].settings(m) is m.output
    assert not by_name["landmarks"].wants_gpu(m)
    assert by_name["landmarks"].wants_gpu(manifest(tmp_path, landmarks={"teacher": "resnet50"}))


def test_a_missing_package_stops_the_build_at_start_naming_it(tmp_path):
    class NeedsNothingInstalled(Stage):
        name, sections = "needy", ("ingest",)

        def packages(self, manifest):
            return {"pltd_no_such_package"}

    ctx = context(tmp_path, manifest(tmp_path))
    with pytest.raises(StartupError, match="stage 'needy' needs the package 'pltd_no_such_package'"):
        check(ctx, [NeedsNothingInstalled()])
    check(ctx, list(STAGES[:2]))  # dlib and mediapipe are installed here
    assert Landmarks().packages(ctx.manifest) == {"dlib", "mediapipe"}


def test_a_missing_model_file_stops_the_build_at_start(tmp_path):
    m = manifest(tmp_path, landmarks={"blink": "resnet18"})
    with pytest.raises(StartupError, match="landmarks.blink_checkpoint is required by the chosen backend"):
        check(context(tmp_path, m), stages_to_run(m, None))


def test_changed_settings_are_refused_and_force_clears_the_stage_and_later_ones(tmp_path):
    ctx = context(tmp_path, manifest(tmp_path))
    prepare(ctx, "m.yaml", [])
    lay = ctx.layout
    written = [lay.output("ingest", "faces", 0), lay.output("landmarks", "faces", 0), lay.stats("landmarks"),
               lay.audit("landmarks"), lay.shard(0), lay.plan("faces")]  # fmt: skip
    for url in written:
        storage.write_json(url, {})
    changed = context(tmp_path, manifest(tmp_path, landmarks={"views": 4}))
    with pytest.raises(StartupError, match="different settings for stage 'landmarks'"):
        prepare(changed, "m.yaml", [])
    prepare(changed, "m.yaml", ["landmarks"])
    assert [storage.exists(u) for u in written] == [True, False, False, False, False, True]
    resolved = yaml.safe_load(Path(lay.resolved).read_text())
    assert resolved["stage_settings_hash"]["landmarks"] == Landmarks().settings_hash(changed.manifest)
    prepare(changed, "m.yaml", ["ingest"])  # --force ingest also re-lists the sources
    assert not storage.exists(lay.plan("faces")) and not storage.exists(lay.output("ingest", "faces", 0))
    with pytest.raises(StartupError, match="--force landmark: unknown stage"):
        prepare(changed, "m.yaml", ["landmark"])
