"""Manifests: the shipped ones validate; a wrong field fails naming the file and the field."""

from __future__ import annotations

import pytest

from pltd.pipeline.config import MANIFESTS, ManifestError, load_manifest

PAPER_ENV = {"VGGFACE2_ROOT": "/d/vgg", "MS1MV3_ROOT": "/d/ms1m", "W300LP_ROOT": "/d/300wlp", "PLTD_MODELS": "/m"}


def write(tmp_path, text: str):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


def test_sample_manifest_validates():
    m = load_manifest(MANIFESTS / "sample.yaml", env={"PLTD_SAMPLE_DIR": "/s"})
    assert [s.format for s in m.sources] == ["vggface2", "insightface_rec", "300w_lp"]
    assert m.sources[0].reader_options().boxes == "/s/vggface2/bb_landmark/loose_bb_train.csv"
    assert m.prepare == "sample"


def test_paper_manifest_takes_roots_from_the_environment():
    m = load_manifest(MANIFESTS / "paper.yaml", env=PAPER_ENV)
    assert {s.name: s.root for s in m.sources} == {
        "vggface2": "/d/vgg/train",
        "ms1mv3": "/d/ms1m",
        "300w_lp": "/d/300wlp",
    }
    assert m.landmarks.views == 2 and m.landmarks.t_d == 0.05 and m.landmarks.teacher == "3ddfa_v2"
    assert m.landmarks.fusion == "consensus" and m.landmarks.mirror and m.landmarks.jaw_style == "3d"
    assert m.identities.networks == ["facenet", "insightface"] and m.identities.architectures == [None, "iresnet50"]
    assert m.identities.checkpoints == ["/m/20180402-114759-vggface2.pt", "/m/ms1mv3_arcface_r50_fp16/backbone.pth"]


def test_paper_manifest_root_flag_overrides():
    m = load_manifest(MANIFESTS / "paper.yaml", roots={"ms1mv3": "s3://bucket/ms1m"}, env=PAPER_ENV)
    assert m.sources[1].root == "s3://bucket/ms1m"


def test_unset_variable_names_file_field_and_variable():
    with pytest.raises(ManifestError) as exc:
        load_manifest(MANIFESTS / "paper.yaml", env={})
    msg = str(exc.value)
    assert "paper.yaml" in msg and "sources.0.root" in msg and "VGGFACE2_ROOT" in msg


@pytest.mark.parametrize(
    ("body", "where", "what"),
    [
        (
            "name: x\nsources: [{name: a, format: vggface2, root: /r}]\ningest: {rows_per_partiton: 5}\n",
            "ingest.rows_per_partiton",
            "unknown field",
        ),
        ("name: x\nsources: [{name: a, format: vgg, root: /r}]\n", "sources.0.format", "unknown format 'vgg'"),
        ("name: x\nsources: [{name: a, format: vggface2, root: /r, box: b.csv}]\n", "sources.0", "box"),
        ("name: x\nsources: [{name: a, format: vggface2}]\n", "sources.0.root", "required"),
        ("name: x\nsources: []\n", "sources", "at least 1"),
        (
            "name: x\nsources: [{name: a, format: vggface2, root: /r}]\nlandmarks: {t_d: -1}\n",
            "landmarks.t_d",
            "greater",
        ),
        (  # dlib68 and MediaPipe both give the visible-outline (2D-style) jaw: a 3D-style PLTD has no jaw source
            "name: x\nsources: [{name: a, format: vggface2, root: /r}]\nlandmarks: {teacher: dlib68}\n",
            "landmarks",
            "jaw_style: '3d', but no configured source gives that jaw",
        ),
        (
            "name: x\nsources: [{name: a, format: vggface2, root: /r}, {name: a, format: vggface2, root: /s}]\n",
            "sources",
            "repeated: a",
        ),
    ],
)
def test_bad_fields_are_named(tmp_path, body, where, what):
    with pytest.raises(ManifestError) as exc:
        load_manifest(write(tmp_path, body), env={})
    msg = str(exc.value)
    assert str(tmp_path / "m.yaml") in msg and where in msg and what in msg


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(write(tmp_path, "name: [unclosed\n"), env={})
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest(tmp_path / "nope.yaml", env={})


def test_root_flag_for_unknown_source(tmp_path):
    with pytest.raises(ManifestError, match="unknown source"):
        load_manifest(MANIFESTS / "sample.yaml", roots={"vgg": "/x"}, env={"PLTD_SAMPLE_DIR": "/s"})
