"""The field's face-recognition files plug in: arcface_torch `backbone.pth`, insightface ONNX models,
facenet-pytorch's `.pt`. Random weights throughout: these test loading and plumbing, not accuracy.

- conformance: the key names and shapes of an arcface_torch IResNet50 are built here from
  insightface's `recognition/arcface_torch/backbones/iresnet.py` (commit
  04a433f154de30ff8604d78f73f2b6af5822f71c), independently of pltd's module; the ONNX
  preprocessing and the mxnet-graph rule follow insightface's `model_zoo/arcface_onnx.py` (commit
  2400a75dd0358ae625d07f300ab2739fa8af00bd); facenet's input is its `fixed_image_standardization`
  ((x − 127.5) / 128) and its released files carry `logits.*` (facenet_pytorch 2.6.0,
  `models/inception_resnet_v1.py: load_weights`).
- consistency: the `onnx` backend on an ONNX export of the same network embeds as the torch one.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import skimage.data
import torch
from onnx import TensorProto, helper
from rich.console import Console

from pltd.pipeline.build import StartupError, check, sources_of, stages_to_run
from pltd.pipeline.catalog import Embeddings
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.stage import BuildContext
from pltd.stages.identities.networks import create_network, insightface_adapter
from pltd.stages.landmarks.onnx_backend import PRESETS
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views


@pytest.fixture(scope="module")
def faces():
    """Two real faces with dlib's 68 points (the astronaut, and her mirror image)."""
    image = skimage.data.astronaut()
    view = make_views(image, np.array([175.0, 76.0, 265.0, 166.0]), 1, 256, seed=0)[0]
    lm = view.to_source(create_source("dlib68", mean_face=None)([view])[0].landmarks)
    flipped, lm_f = image[:, ::-1].copy(), lm.copy()
    lm_f[:, 0] = image.shape[1] - 1 - lm_f[:, 0]
    return [image, flipped], [lm, lm_f]


def arcface_torch_iresnet50_shapes() -> dict[str, tuple]:
    """Every state_dict key of arcface_torch's iresnet50 and its shape, from its definition:
    conv1/bn1/prelu (64), layers of [3, 4, 14, 3] IBasicBlocks of 64/128/256/512 planes, stride 2 in
    each layer's first block (so it has downsample.0 conv1x1 + downsample.1 BN), then bn2, fc
    (512·7·7 → 512) and features (BatchNorm1d 512)."""
    shapes: dict[str, tuple] = {}

    def bn(name, c):
        shapes.update({f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                       f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()})  # fmt: skip

    shapes["conv1.weight"] = (64, 3, 3, 3)
    bn("bn1", 64)
    shapes["prelu.weight"] = (64,)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 14, 3], strict=True)):
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            bn(f"{p}.bn1", inplanes)
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.prelu.weight"] = (planes,)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn3", planes)
            if j == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes)
            inplanes = planes
    bn("bn2", 512)
    shapes["fc.weight"], shapes["fc.bias"] = (512, 512 * 7 * 7), (512,)
    bn("features", 512)
    return shapes


def random_backbone_pth(path, prefix: str = "") -> dict:
    """What an arcface_torch `backbone.pth` holds, with random values scaled so that the output
    depends on the input (fan-in scaled convolutions, BN near identity)."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in arcface_torch_iresnet50_shapes().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif k.endswith("prelu.weight"):
            sd[k] = torch.rand(shape, generator=g) * 0.25
        elif len(shape) > 1:
            sd[k] = torch.randn(shape, generator=g) / float(np.prod(shape[1:])) ** 0.5
        elif k.endswith(".weight"):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[k] = 0.01 * torch.randn(shape, generator=g)
    torch.save({prefix + k: v for k, v in sd.items()}, path)
    return sd


def test_an_insightface_named_iresnet50_state_dict_loads_strictly_and_embeds(tmp_path, faces):
    sd = random_backbone_pth(tmp_path / "backbone.pth")
    net = create_network("insightface", str(tmp_path / "backbone.pth"), architecture="iresnet50", device="cpu")
    own = net.model.state_dict()
    assert own.keys() == sd.keys()  # pltd's IResNet50 has exactly arcface_torch's names …
    assert all(torch.equal(own[k], sd[k].to(own[k].dtype)) for k in sd)  # … and every tensor is the file's
    e = net(*faces)
    assert e.shape == (2, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert float(e[0] @ e[1]) < 0.99  # the mirror image is another input
    # a DDP-saved file (`module.` prefix) loads the same
    random_backbone_pth(tmp_path / "ddp.pth", prefix="module.")
    ddp = create_network("insightface", str(tmp_path / "ddp.pth"), architecture="iresnet50", device="cpu")
    assert np.array_equal(ddp(*faces), e)


def test_a_state_dict_for_another_architecture_fails_naming_the_file_and_the_architecture(tmp_path):
    random_backbone_pth(tmp_path / "backbone.pth")
    with pytest.raises(ValueError, match=r"backbone\.pth is not an insightface iresnet100 state_dict.*iresnet50's"):
        create_network("insightface", str(tmp_path / "backbone.pth"), architecture="iresnet100")
    with pytest.raises(ValueError, match="identities.architectures: .*needs its architecture"):
        create_network("insightface", str(tmp_path / "backbone.pth"))


def export_insightface_signature(model: torch.nn.Module, path) -> str:
    """An ONNX file with insightface's recognition signature: input N×3×112×112 float (batch
    symbolic), one N×512 output."""

    class Embedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)["embedding"]

    torch.onnx.export(Embedding().eval(), (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False, opset_version=17,
                      input_names=["input.1"], output_names=["embedding"],
                      dynamic_axes={"input.1": {0: "None"}, "embedding": {0: "None"}})  # fmt: skip
    m = onnx.load(str(path))  # insightface's output is named "683" (TorchScript refuses numeric names)
    for node in m.graph.node:
        node.output[:] = ["683" if o == "embedding" else o for o in node.output]
    m.graph.output[0].name = "683"
    onnx.save(m, str(path))
    return str(path)


def test_an_onnx_export_embeds_as_the_torch_network(tmp_path, faces):
    random_backbone_pth(tmp_path / "backbone.pth")
    torch_net = create_network("insightface", str(tmp_path / "backbone.pth"), architecture="iresnet50", device="cpu")
    path = export_insightface_signature(torch_net.model, tmp_path / "w600k_r50.onnx")
    assert insightface_adapter(path) == PRESETS["insightface"]  # no Sub/Mul up front: (x − 127.5) / 127.5
    onnx_net = create_network("onnx", path)  # adapter None: insightface's preset, as insightface chooses it
    images, lms = faces[0] * 3, faces[1] * 3  # 6 images: more than the export's batch of 1
    got, want = onnx_net(images, lms), torch_net(images, lms)
    assert got.shape == (6, 512) and onnx_net.dim == 512
    assert np.abs(got - want).max() < 1e-4


def test_an_mxnet_converted_graph_gets_raw_pixels(tmp_path):
    """insightface's rule: Sub and Mul among the first 8 nodes → input_mean 0, input_std 1."""
    nodes = [helper.make_node("Sub", ["x", "m"], ["a"], name="_minus0"),
             helper.make_node("Mul", ["a", "s"], ["b"], name="_mul0"),
             helper.make_node("ReduceMean", ["b"], ["y"], keepdims=0, axes=[2, 3])]  # fmt: skip
    g = helper.make_graph(
        nodes, "mx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("m", TensorProto.FLOAT, [], [127.5]), helper.make_tensor("s", TensorProto.FLOAT, [], [0.0078125])],
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "mx.onnx")
    a = insightface_adapter(tmp_path / "mx.onnx")
    assert (a.mean, a.std, a.input_size, a.colour, a.layout) == ((0.0,) * 3, (1.0,) * 3, 112, "rgb", "nchw")


def test_facenet_released_file_with_its_classifier_loads_and_standardises_as_facenet(tmp_path):
    from pltd.stages.identities.networks import _facenet_module

    torch.manual_seed(0)
    model = _facenet_module().InceptionResnetV1(pretrained=None).eval()
    sd = model.state_dict() | {"logits.weight": torch.randn(8631, 512), "logits.bias": torch.randn(8631)}
    torch.save(sd, tmp_path / "20180402-114759-vggface2.pt")
    net = create_network("facenet", str(tmp_path / "20180402-114759-vggface2.pt"), device="cpu")
    crops = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 128.0  # fixed_image_standardization
    with torch.no_grad():
        want = torch.nn.functional.normalize(model(x), dim=1).numpy()
    assert np.abs(net._run(crops) - want).max() < 1e-5
    del sd["last_bn.running_var"]
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"broken\.pt is not an InceptionResnetV1 state_dict: 1 missing"):
        create_network("facenet", str(tmp_path / "broken.pt"))


def manifest(tmp_path, identities: dict) -> Manifest:
    """One image folder holding a file (so the start-up check reaches the model files) and `identities`."""
    (tmp_path / "faces").mkdir(exist_ok=True)
    (tmp_path / "faces" / "a.jpg").write_bytes(b"x")
    src = {"name": "faces", "format": "image_folder", "root": str(tmp_path / "faces")}
    return Manifest.model_validate({"name": "t", "sources": [src], "identities": identities})


def start_up(tmp_path, m: Manifest) -> None:
    check(BuildContext(m, RunLayout(str(tmp_path / "run")), Console(quiet=True), sources_of(m)), stages_to_run(m, None))


def test_missing_weights_fail_at_start_up_naming_the_file_and_the_field(tmp_path):
    ident = {"networks": ["insightface", "onnx"], "architectures": ["iresnet50", None],
             "checkpoints": [str(tmp_path / "ms1mv3_r50" / "backbone.pth"), str(tmp_path / "w600k_r50.onnx")],
             "onnx": [None, "insightface"], "thresholds": [0.5, 0.5]}  # fmt: skip
    m = manifest(tmp_path, ident)
    assert m.identities.onnx[1] == PRESETS["insightface"]
    settings = Embeddings().settings(m)
    assert settings.architectures == ("iresnet50", None) and settings.onnx == (None, PRESETS["insightface"])
    assert Embeddings().packages(m) == {"torch", "onnxruntime", "onnx"}
    with pytest.raises(StartupError, match=r"identities\.checkpoints\.0: .*ms1mv3_r50/backbone\.pth not found"):
        start_up(tmp_path, m)
    random_backbone_pth(tmp_path / "backbone.pth")
    ok = manifest(tmp_path, ident | {"checkpoints": [str(tmp_path / "backbone.pth"), ident["checkpoints"][1]]})
    with pytest.raises(StartupError, match=r"identities\.checkpoints\.1: .*w600k_r50\.onnx not found"):
        start_up(tmp_path, ok)
    with pytest.raises(FileNotFoundError, match=r"identities\.checkpoints: onnx weights file .*w600k_r50\.onnx not"):
        create_network("onnx", ident["checkpoints"][1])
    with pytest.raises(ValueError, match=r"architectures\.0: required with network insightface"):
        manifest(tmp_path, ident | {"architectures": [None, None]})
    with pytest.raises(ValueError, match=r"onnx\.1: unknown preset 'pltd_teacher'"):
        manifest(tmp_path, ident | {"onnx": [None, "pltd_teacher"]})


def test_the_insightface_architectures_are_the_iresnets_pltd_builds():
    """Consistency: the names a manifest may give `identities.architectures` (kept without torch, for the
    manifest's validation) are exactly the IResNets whose blocks per stage pltd knows and builds."""
    from pltd.networks import ARCHITECTURES
    from pltd.networks.iresnet import LAYERS
    from pltd.stages.identities.networks import INSIGHTFACE_ARCHITECTURES

    assert tuple(f"iresnet{n}" for n in LAYERS) == INSIGHTFACE_ARCHITECTURES
    assert set(INSIGHTFACE_ARCHITECTURES) <= set(ARCHITECTURES)
