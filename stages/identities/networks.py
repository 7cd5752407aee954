"""Face-recognition backends (a registry); each maps faces to L2-normalised embeddings.

- `dlib`: dlib's ResNet face descriptor (128-d, ships in face-recognition-models), aligned by
  dlib's own chip extraction from the 68 landmarks;
- `checkpoint`: a network of our trainer (task `face_recognition`, 512-d), on ArcFace-aligned
  112x112 crops — net_VGG and net_MS of the paper trained by `pltd train --preset fr`;
- `insightface`: an arcface_torch `backbone.pth` (a bare IResNet18–100 state_dict, e.g. MS1MV3's
  `ms1mv3_arcface_r50_fp16/backbone.pth`) loaded strictly into pltd's IResNet of the architecture
  the manifest names (`identities.architectures`), on the same ArcFace crops;
- `onnx`: an ONNX recognition model run by onnxruntime through an adapter
  (`stages/landmarks/onnx_backend.py`; default: insightface's recognition preset, as insightface's
  `ArcFaceONNX` reads its graphs) on ArcFace crops of the adapter's size — insightface's packs
  (`w600k_r50.onnx`) and `pltd train`'s `model.embedding.onnx`;
- `facenet`: facenet-pytorch's InceptionResnetV1 (512-d) with weights from a local file, on
  160x160 crops (the package's own MTCNN convention, margin 0). facenet-pytorch's package imports
  torchvision, whose PyPI builds do not load beside the CPU torch; its model module alone does not
  need it, so it is imported on its own.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

from pltd import worker_cache
from pltd.backends import Backend, PltdCheckpoint
from pltd.input_contract import InputContract
from pltd.registry import Registry
from pltd.stages.identities.align import arcface_crop
from pltd.vectors import l2_normalize

NETWORKS: Registry[type[Backend]] = Registry("face-recognition network")
register = NETWORKS.register


def create_network(name: str, checkpoint: str | None = None, **kw):
    """kw: `architecture` (insightface), `adapter` (onnx: an OnnxAdapter, None = insightface's preset)."""
    return NETWORKS.create(name, checkpoint=checkpoint, **kw)


def cached_network(name: str, checkpoint: str | None = None, architecture: str | None = None, adapter=None):
    """The network built once per worker process (the embeddings stage and the calibration share it)."""
    kw = {k: v for k, v in (("architecture", architecture), ("adapter", adapter)) if v is not None}
    key = ("fr", name, checkpoint, architecture, repr(adapter))
    return worker_cache.cached(key, lambda: create_network(name, checkpoint, **kw))


def weights_path(checkpoint: str | None, backend: str, what: str) -> Path:
    """The weights file of a backend, or an error naming the file and the manifest field."""
    if not checkpoint or not Path(checkpoint).expanduser().is_file():
        raise FileNotFoundError(
            f"identities.checkpoints: {backend} weights file {checkpoint} not found ({what}, saved on this machine)"
        )
    return Path(checkpoint).expanduser()


@register("dlib")
class DlibDescriptor(Backend):
    dim = 128
    packages = ("dlib", "face_recognition_models")
    MODEL = "dlib_face_recognition_resnet_model_v1.dat"

    @classmethod
    def model_files(cls, checkpoint: str | None = None, **_):
        from pltd.stages.landmarks.sources import shipped_model_path

        return {"checkpoint": (True, checkpoint)} if checkpoint else {"shipped": (True, shipped_model_path(cls.MODEL))}

    def __init__(self, checkpoint: str | None = None, jitters: int = 0, **_):
        import dlib

        from pltd.stages.landmarks.sources import shipped_model

        self.dlib = dlib
        self.model = dlib.face_recognition_model_v1(checkpoint or shipped_model(self.MODEL))
        self.jitters = jitters

    def __call__(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        out = []
        for img, lm in zip(images, landmarks, strict=True):
            pts = np.asarray(lm, float).reshape(68, 2)
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            rect = self.dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
            shape = self.dlib.full_object_detection(
                rect, [self.dlib.point(round(float(x)), round(float(y))) for x, y in pts]
            )
            chip = self.dlib.get_face_chip(img, shape, size=150, padding=0.25)
            out.append(np.asarray(self.model.compute_face_descriptor(chip, self.jitters)))
        return l2_normalize(np.stack(out)) if out else np.zeros((0, self.dim), np.float32)


class TorchEmbedder(Backend):
    """Batched torch inference on aligned crops, flip-free (the pipeline embeds each image once), fed
    through `contract`: by default pltd's own, x / 127.5 − 1 at 112 (arcface_torch's Normalize(0.5, 0.5)
    on x / 255); a pltd checkpoint's recorded one."""

    contract = InputContract(input_size=112)
    batch_size = 128
    packages = ("torch",)
    wants_gpu = True

    @classmethod
    def model_files(cls, checkpoint: str | None = None, **_):
        return {"checkpoint": (True, checkpoint)}

    @property
    def size(self) -> int:
        return self.contract.input_size

    def _forward(self, x):
        out = self.model(x)
        return out["embedding"] if isinstance(out, dict) else out  # pltd's IResNets return a dict

    def _setup(self, model, device: str | None) -> None:
        import torch

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.eval().to(self.device)
        blank = torch.zeros(1, self.size, self.size, 3, dtype=torch.uint8, device=self.device)
        with torch.inference_mode():
            self.dim = int(self._forward(self.contract.torch_input(blank)).shape[1])

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch = self.torch
        outs = []
        with torch.inference_mode():
            for x in self.contract.torch_batches(crops, self.device, self.batch_size):
                outs.append(self._forward(x).float().cpu().numpy())
        return l2_normalize(np.concatenate(outs)) if outs else np.zeros((0, self.dim), np.float32)

    def __call__(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        """ArcFace-aligned crops of `size` (the facenet backend crops otherwise)."""
        crops = [arcface_crop(img, lm, self.size) for img, lm in zip(images, landmarks, strict=True)]
        return self._run(np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8))


@register("checkpoint")
class CheckpointNetwork(PltdCheckpoint, TorchEmbedder):
    TASK = "face_recognition"

    def __init__(self, checkpoint: str | None, device: str | None = None, **_):
        from pltd.checkpoints import load_model

        model, ckpt = load_model(checkpoint, task=self.TASK, role="identities.checkpoints")
        self.contract = ckpt["input"]
        self._setup(model, device)


def _facenet_module():
    """facenet_pytorch.models.inception_resnet_v1 without running the package's __init__."""
    name = "facenet_pytorch.models.inception_resnet_v1"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the facenet backend needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0")
    root = Path(next(iter(spec.submodule_search_locations)))
    for pkg, path in (("facenet_pytorch", root), ("facenet_pytorch.models", root / "models"),
                      ("facenet_pytorch.models.utils", root / "models" / "utils")):  # fmt: skip
        if pkg not in sys.modules:
            mod = types.ModuleType(pkg)
            mod.__path__ = [str(path)]
            sys.modules[pkg] = mod
    return importlib.import_module(name)


INSIGHTFACE_ARCHITECTURES = ("iresnet18", "iresnet34", "iresnet50", "iresnet100")


def load_state_dict_file(path: Path, backend: str) -> dict:
    """A bare state_dict saved by torch (weights only: a file cannot run code); DDP's `module.`
    prefix is dropped."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or unsafe files
        raise ValueError(f"identities.checkpoints: {path} is not a loadable {backend} state_dict: {exc}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        hint = " (a pltd checkpoint: use network `checkpoint`)" if isinstance(sd, dict) and "state_dict" in sd else ""
        raise ValueError(f"identities.checkpoints: {path} is not a bare {backend} state_dict{hint}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _mismatch(model, sd: dict) -> str:
    """What differs between a state_dict and a model: missing, unexpected and wrongly shaped keys."""
    own = model.state_dict()
    missing, extra = [k for k in own if k not in sd], [k for k in sd if k not in own]
    shapes = [f"{k}: file {tuple(sd[k].shape)}, network {tuple(v.shape)}" for k, v in own.items()
              if k in sd and sd[k].shape != v.shape]  # fmt: skip
    parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
             f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
             f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]  # fmt: skip
    return "; ".join(q for q in parts if q)


def iresnet_of(sd: dict) -> str | None:
    """The IResNet whose blocks per stage the state_dict has (`layerI.J.` keys), if it is one."""
    from pltd.networks.iresnet import LAYERS

    blocks = [len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    return next((f"iresnet{n}" for n, layers in LAYERS.items() if layers == blocks), None)


@register("insightface")
class InsightfaceBackbone(TorchEmbedder):
    """arcface_torch's `backbone.pth`: pltd's IResNet has insightface's module names and shapes
    (`pltd/networks/iresnet.py`), so the file loads strictly, every tensor used as it is."""

    @classmethod
    def check(cls, where, checkpoint: str | None = None, architecture: str | None = None, **_):
        cls.load(checkpoint, architecture)

    def __init__(self, checkpoint: str | None, architecture: str | None = None, device: str | None = None, **_):
        self._setup(self.load(checkpoint, architecture), device)

    @staticmethod
    def load(checkpoint: str | None, architecture: str | None):
        """The IResNet with the file's weights, or an error naming the file, the fields and what differs."""
        from pltd.networks import create

        path = weights_path(checkpoint, "insightface", "an arcface_torch backbone.pth, e.g. ms1mv3_arcface_r50_fp16/")
        if architecture not in INSIGHTFACE_ARCHITECTURES:
            raise ValueError(
                f"identities.architectures: the insightface network {path} needs its architecture, one of "
                f"{', '.join(INSIGHTFACE_ARCHITECTURES)}; got {architecture!r}"
            )
        sd = load_state_dict_file(path, "insightface")
        model = create(architecture)
        problem = _mismatch(model, sd)
        if problem:
            guess = iresnet_of(sd)
            hint = f"; the file's blocks per stage are {guess}'s" if guess and guess != architecture else ""
            raise ValueError(
                f"identities.checkpoints: {path} is not an insightface {architecture} state_dict "
                f"(identities.architectures): {problem}{hint}"
            )
        model.load_state_dict(sd, strict=True)
        return model


@register("onnx")
class OnnxEmbedder(Backend):
    """An ONNX recognition model: ArcFace crops of the adapter's size through onnxruntime, batched."""

    packages = ("onnxruntime", "onnx")
    wants_gpu = True

    @classmethod
    def model_files(cls, checkpoint: str | None = None, **_):
        return {"checkpoint": (True, checkpoint)}

    @classmethod
    def check(cls, where, checkpoint: str | None = None, adapter=None, **_):
        from pltd.stages.landmarks.onnx_backend import check_onnx

        path, adapter = cls.file_and_adapter(checkpoint, adapter)
        check_onnx(str(path), adapter, where("checkpoint"))

    @staticmethod
    def file_and_adapter(checkpoint: str | None, adapter):
        path = weights_path(checkpoint, "onnx", "an ONNX recognition model, e.g. buffalo_l/w600k_r50.onnx")
        adapter = adapter if adapter is not None else insightface_adapter(path)
        if adapter.decoding != "embedding":
            raise ValueError(f"identities.onnx: decoding {adapter.decoding!r}, a recognition model needs 'embedding'")
        if adapter.path is not None:
            raise ValueError("identities.onnx: name the model file in identities.checkpoints, not in `path`")
        return path, adapter

    def __init__(self, checkpoint: str | None, adapter=None, threads: int = 0, **_):
        from pltd.stages.landmarks.onnx_backend import OnnxNetwork

        path, adapter = self.file_and_adapter(checkpoint, adapter)
        self.net = OnnxNetwork(str(path), adapter, threads)
        self.size = adapter.input_size
        self.dim = self.net.session.get_outputs()[0].shape[-1]

    def __call__(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        crops = [arcface_crop(img, lm, self.size) for img, lm in zip(images, landmarks, strict=True)]
        out = self.net(np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8))
        return l2_normalize(out) if len(out) else out


def insightface_adapter(path: str | Path):
    """insightface's preset for a graph, chosen as its `ArcFaceONNX` chooses: Sub and Mul among the
    first 8 nodes (an mxnet conversion that normalises inside) → raw 0–255 input, else (x − 127.5) / 127.5."""
    import onnx

    from pltd.stages.landmarks.onnx_backend import PRESETS

    nodes = onnx.load(str(path), load_external_data=False).graph.node[:8]
    sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    return PRESETS["insightface_mxnet" if sub and mul else "insightface"]


@register("facenet")
class FaceNet(TorchEmbedder):
    """facenet-pytorch's released files (20180402-114759-vggface2.pt) hold the VGGFace2 classifier
    too (`logits.*`, 8631 classes), which InceptionResnetV1(pretrained=None) does not have: those
    keys are dropped, every other one loads strictly. Input: the package's
    `fixed_image_standardization`, (x − 127.5) / 128, at 160."""

    contract = InputContract(input_size=160, std=(128.0,) * 3)
    packages = ("torch", "facenet_pytorch")

    @classmethod
    def check(cls, where, checkpoint: str | None = None, **_):
        cls.load(checkpoint)

    def __init__(self, checkpoint: str | None, device: str | None = None, **_):
        self._setup(self.load(checkpoint), device)

    @staticmethod
    def load(checkpoint: str | None):
        what = "a state_dict of InceptionResnetV1, e.g. 20180402-114759-vggface2.pt"
        path = weights_path(checkpoint, "facenet", what)
        sd = {k: v for k, v in load_state_dict_file(path, "facenet").items() if not k.startswith("logits.")}
        model = _facenet_module().InceptionResnetV1(pretrained=None, classify=False)
        problem = _mismatch(model, sd)
        if problem:
            raise ValueError(f"identities.checkpoints: {path} is not an InceptionResnetV1 state_dict: {problem}")
        model.load_state_dict(sd, strict=True)
        return model

    def __call__(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        from PIL import Image

        crops = []
        for img, lm in zip(images, landmarks, strict=True):
            pts = np.asarray(lm, float).reshape(68, 2)
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            crops.append(
                np.asarray(Image.fromarray(img).resize((self.size, self.size), Image.BILINEAR, box=(x0, y0, x1, y1)))
            )
        return self._run(np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8))
