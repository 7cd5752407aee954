"""Face-recognition backends (a registry); each maps faces to L2-normalised embeddings.

- `dlib`: dlib's ResNet face descriptor (128-d, ships in face-recognition-models), aligned by
  dlib's own chip extraction from the 68 landmarks;
- `checkpoint`: a network of our trainer (task `face_recognition`, 512-d), on ArcFace-aligned
  112x112 crops — net_VGG and net_MS of the paper;
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

from pltd.registry import Registry
from pltd.stages.identities.align import arcface_crop
from pltd.vectors import l2_normalize

NETWORKS = Registry("face-recognition network")
register = NETWORKS.register


def create_network(name: str, checkpoint: str | None = None, **kw):
    return NETWORKS.create(name, checkpoint=checkpoint, **kw)


@register("dlib")
class DlibDescriptor:
    dim = 128

    def __init__(self, checkpoint: str | None = None, jitters: int = 0, **_):
        import dlib

        from pltd.stages.landmarks.sources import shipped_model

        self.dlib = dlib
        self.model = dlib.face_recognition_model_v1(
            checkpoint or shipped_model("dlib_face_recognition_resnet_model_v1.dat")
        )
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


class TorchEmbedder:
    """Batched torch inference on aligned crops, flip-free (the pipeline embeds each image once)."""

    size = 112
    batch_size = 128

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch = self.torch
        outs = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(crops[i : i + self.batch_size]).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
                outs.append(self.model(x).float().cpu().numpy())
        return l2_normalize(np.concatenate(outs)) if outs else np.zeros((0, self.dim), np.float32)


@register("checkpoint")
class CheckpointNetwork(TorchEmbedder):
    def __init__(self, checkpoint: str | None, device: str | None = None, **_):
        import torch

        from pltd.checkpoints import load_model

        self.torch = torch
        self.model, ckpt = load_model(checkpoint, task="face_recognition", role="identities.checkpoints")
        self.size = int(ckpt["input_size"])
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        with torch.inference_mode():
            self.dim = int(self.model(torch.zeros(1, 3, self.size, self.size, device=self.device)).shape[1])

    def __call__(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        crops = [arcface_crop(img, lm, self.size) for img, lm in zip(images, landmarks, strict=True)]
        return self._run(np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8))


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


@register("facenet")
class FaceNet(TorchEmbedder):
    dim = 512
    size = 160

    def __init__(self, checkpoint: str | None, device: str | None = None, **_):
        import torch

        if not checkpoint or not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"facenet weights file {checkpoint} not found (a state_dict of InceptionResnetV1, e.g. "
                "20180402-114759-vggface2.pt, saved on this machine)"
            )
        self.torch = torch
        self.model = _facenet_module().InceptionResnetV1(pretrained=None, classify=False).eval()
        self.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

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
