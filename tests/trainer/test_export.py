"""ONNX export of `pltd train`'s networks (consistency tests, random weights: plumbing only): each
exported head, run by the pipeline's ONNX backends (`OnnxTeacher`, `OnnxBlink`, the identities
`onnx` network), gives what the torch backends give on the same inputs, at any batch size.
`pltd train` writes them with `export_onnx: true` (test_training.py: test_tiny_model_fits_a_tiny_pltd)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
import torch

from pltd.stages.identities.networks import create_network
from pltd.stages.landmarks.blink import ResNetBlink
from pltd.stages.landmarks.onnx_backend import PRESETS, OnnxBlink, OnnxTeacher
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views
from pltd.trainer.config import load_config
from pltd.trainer.export import export_onnx, heads_for
from pltd.trainer.loop import export_inference
from pltd.trainer.model import TaskModel


def model_for(preset: str, *overrides: str, n_classes: int = 0):
    cfg = load_config(preset, list(overrides))
    torch.manual_seed(0)
    model = TaskModel(cfg, n_classes)
    with torch.no_grad():  # random BN statistics, so eval mode is not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return cfg, model.eval()


@pytest.fixture(scope="module")
def views():
    return make_views(skimage.data.astronaut(), np.array([175.0, 76.0, 265.0, 166.0]), 5, 256, seed=0)


def test_heads_of_each_preset():
    assert heads_for(["fr", "fld", "hpe"]) == ["embedding", "landmarks_pose"]
    assert heads_for(["fld", "hpe"]) == ["landmarks_pose"] and heads_for(["blink"]) == ["blink"]
    assert heads_for(["fr"]) == ["embedding"] and heads_for(["fld"]) == []


def test_teacher_export_runs_through_the_onnx_teacher_as_the_torch_teacher(tmp_path, views):
    cfg, model = model_for("teacher-300wlp", "arch=resnet_tiny")
    export_inference(model, cfg, tmp_path / "model.pt")
    (path,) = export_onnx(model, cfg.tasks, cfg.input_size, tmp_path)
    assert path.name == "model.landmarks_pose.onnx"
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    torch_teacher = create_source("resnet50", checkpoint=str(tmp_path / "model.pt"), device="cpu")
    onnx_teacher = OnnxTeacher(PRESETS["pltd_teacher"].model_copy(update={"path": str(path)}))
    got, want = onnx_teacher(views), torch_teacher(views)
    assert len(got) == 5
    for g, w in zip(got, want, strict=True):
        assert np.abs(g.landmarks - w.landmarks).max() < 1e-3  # pixels of the 256-pixel view
        assert np.abs(np.subtract(g.pose, w.pose)).max() < 1e-4  # degrees
    assert np.abs(got[0].landmarks - got[1].landmarks).max() > 1e-3  # the views differ, so do the outputs


def test_blink_export_runs_through_onnx_blink_as_the_torch_blink(tmp_path):
    cfg, model = model_for("blink", "arch=resnet_tiny")
    export_inference(model, cfg, tmp_path / "model.pt")
    (path,) = export_onnx(model, cfg.tasks, cfg.input_size, tmp_path)
    crops = list(np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8))
    want = ResNetBlink(str(tmp_path / "model.pt"), device="cpu")(crops)
    got = OnnxBlink(PRESETS["pltd_blink"].model_copy(update={"path": str(path)}))(crops)
    assert got.shape == (7,) and np.abs(got - want).max() < 1e-5 and np.ptp(want) > 1e-4


def test_fr_export_embeds_through_the_onnx_network_as_the_checkpoint_network(tmp_path, views):
    cfg, model = model_for("fr", "arch=iresnet_tiny", n_classes=3)
    export_inference(model, cfg, tmp_path / "model.pt")
    (path,) = export_onnx(model, cfg.tasks, cfg.input_size, tmp_path)
    torch_fr = create_network("checkpoint", str(tmp_path / "model.pt"), device="cpu")  # reads the IResNet's dict
    onnx_fr = create_network("onnx", str(path), adapter=PRESETS["pltd_embedding"])
    lm = views[0].to_source(create_source("dlib68", mean_face=None)([views[0]])[0].landmarks)
    image = skimage.data.astronaut()
    images, lms = [image, image[:, ::-1].copy(), image], [lm, lm, lm]
    got, want = onnx_fr(images, lms), torch_fr(images, lms)
    assert got.shape == (3, 32) and np.abs(got - want).max() < 1e-4 and float(want[0] @ want[1]) < 0.999


def test_multitask_export_writes_one_graph_per_head(tmp_path):
    cfg, model = model_for("mtl", "arch=iresnet_multi_tiny", n_classes=3)
    paths = export_onnx(model, cfg.tasks, cfg.input_size, tmp_path)
    assert [p.name for p in paths] == ["model.embedding.onnx", "model.landmarks_pose.onnx"]
    emb_nodes = " ".join(n.name for n in onnx.load(str(paths[0])).graph.node)
    assert "layer4_fld" not in emb_nodes and "layer4_hpe" not in emb_nodes and "layer4/" in emb_nodes
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32))
    with torch.no_grad():
        out = model.outputs(x)
    want = {"embedding": out["embedding"], "landmarks_pose": torch.cat([out["landmarks"], out["pose"]], 1)}
    for path, head in zip(paths, want, strict=True):
        (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
        assert got.shape == tuple(want[head].shape) and np.abs(got - want[head].numpy()).max() < 1e-4
