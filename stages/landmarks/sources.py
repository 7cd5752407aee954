"""Landmark sources of Algorithm 1 (a registry): teachers and the second source (MediaPipe).

Each source maps a list of views to one `Sample` per view (68 points in view pixels, a pose, or
None when it finds no face). Heavy models are built once per worker through `worker_cache`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar

import numpy as np

from pltd.backends import PltdCheckpoint
from pltd.schemas import LANDMARKS_POSE
from pltd.stages.landmarks.base import (  # noqa: F401  (re-exported: the sources' public names)
    SOURCES,
    FittedPose,
    LandmarkSource,
    Sample,
    create_source,
    register,
    resized,
    samples_from_139,
)
from pltd.stages.landmarks.onnx_backend import OnnxAdapter, OnnxTeacher
from pltd.stages.landmarks.tddfa import Tddfa
from pltd.stages.landmarks.views import View


def shipped_model_path(filename: str) -> str | None:
    """Where a model file of the `face_recognition_models` package is (None: the package is not
    installed), located without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / filename)


def shipped_model(filename: str) -> str:
    """A model file of the `face_recognition_models` package, or an error naming it."""
    path = shipped_model_path(filename)
    if path is None:
        raise FileNotFoundError(f"{filename}: package face_recognition_models is not installed")
    if not Path(path).is_file():
        raise FileNotFoundError(f"dlib model file {path} not found (reinstall face-recognition-models)")
    return path


@register("dlib68")
class Dlib68(FittedPose):
    """dlib's iBUG 300-W 68-point shape predictor; pose by fitting the mean 3D face."""

    packages = ("dlib", "face_recognition_models")
    MODEL = "shape_predictor_68_face_landmarks.dat"

    @classmethod
    def model_files(cls, **_):
        return {"shipped": (True, shipped_model_path(cls.MODEL))}

    def __init__(self, mean_face: np.ndarray | None, **_):
        import dlib

        self.dlib = dlib
        self.predictor = dlib.shape_predictor(shipped_model(self.MODEL))
        self.mean_face = mean_face

    # dlib's detector box relative to the box of the 68 points it leads to (median over the 94
    # faces dlib's detector finds in the embedded sample's photos): a square of side 1.04·sqrt(w·h),
    # centred 0.02 w left of and 0.107 h above the points' box centre.
    RECT_SIDE, RECT_DX, RECT_DY = 1.04, -0.02, -0.107

    def _predict(self, image: np.ndarray, box) -> np.ndarray:
        shape = self.predictor(image, self.dlib.rectangle(*(round(float(c)) for c in box)))
        return np.array([(p.x, p.y) for p in shape.parts()], float)

    def __call__(self, views: list[View]) -> list[Sample | None]:
        """Two passes: the view's face box, then the box dlib's own detector would have drawn
        around the first pass's points — datasets' boxes (loose VGGFace2 boxes, 300W-LP landmark
        boxes, MediaPipe detections) differ from the box the predictor was trained with."""
        out = []
        for v in views:
            first = self._predict(v.image, v.face)
            (x0, y0), (x1, y1) = first.min(axis=0), first.max(axis=0)
            w, h = x1 - x0, y1 - y0
            side = self.RECT_SIDE * np.sqrt(max(w, 1.0) * max(h, 1.0))
            cx, cy = (x0 + x1) / 2 + self.RECT_DX * w, (y0 + y1) / 2 + self.RECT_DY * h
            pts = self._predict(v.image, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
            out.append(Sample(pts, None, self.name))
        return out


@register("mediapipe_graph")
class MediaPipeMesh(FittedPose):
    """MediaPipe FaceMesh's own graph (468 points; re-detects the face in every view, one view at a
    time) → 68 through the index map; pose by fitting the mean face. The default `mediapipe` is the
    same network batched on the known region (`facemesh.py`)."""

    roles = ("second",)
    packages = ("mediapipe",)

    def __init__(self, mean_face: np.ndarray | None, index_map: np.ndarray, **_):
        import mediapipe as mp

        self.mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.5
        )
        self.mean_face = mean_face
        self.index_map = index_map

    def run_mesh(self, image: np.ndarray) -> np.ndarray | None:
        res = self.mesh.process(image)
        if not res.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = res.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h, p.z * w) for p in lm], float)

    def __call__(self, views: list[View]) -> list[Sample | None]:
        out = []
        for v in views:
            mesh = self.run_mesh(v.image)
            if mesh is None:
                out.append(None)
                continue
            pts = mesh[self.index_map, :2]
            out.append(Sample(pts, None, self.name, mesh))
        return out


@register("resnet50")
class ResNetTeacher(PltdCheckpoint, LandmarkSource):
    """The paper's teacher: a ResNet50 trained by `pltd train --preset teacher-300wlp` (68x2 + 3 outputs).

    Outputs: landmarks as fractions of the input side (x, y interleaved), then yaw, pitch, roll in
    degrees. Runs batched over every view it is given, on the GPU when there is one.
    """

    @classmethod
    def gives_jaw(cls, **_) -> None:
        return None  # the style of the PLTD it was trained on

    pose_is_fitted = False  # it regresses the pose (trained on 300W-LP's Pose_Para)
    reference = True  # the paper's teacher: trained on 300W-LP (base.LandmarkSource.reference)
    TASK = "landmarks_pose"

    def __init__(self, checkpoint: str | None, batch_size: int = 128, device: str | None = None, **_):
        import torch

        from pltd.checkpoints import load_model

        self.torch = torch
        self.model, ckpt = load_model(checkpoint, task=self.TASK, role="landmarks.teacher_checkpoint")
        self.contract = ckpt["input"]
        self.input_size = self.contract.input_size
        # the jaw style of the PLTD it learned (`pltd train` records it); a checkpoint without one was
        # trained before styles were recorded, on 300W-LP's pt2d: 2D-style
        self.jaw_style = (ckpt.get("meta") or {}).get("jaw_style") or "2d"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # channels_last: oneDNN's faster convolution layout on CPUs (~25 % here) and on GPUs
        self.model.to(self.device, memory_format=torch.channels_last)
        self.batch_size = batch_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 RGB (S = input size), fed through the checkpoint's input contract → N x 139."""
        torch = self.torch
        outs = []
        with torch.inference_mode():
            for x in self.contract.torch_batches(images, self.device, self.batch_size):
                outs.append(self.model(x.contiguous(memory_format=torch.channels_last)).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, LANDMARKS_POSE), np.float32)

    def __call__(self, views: list[View]) -> list[Sample | None]:
        return samples_from_139(self.predict(resized(views, self.input_size)), views, self.name)


@register("onnx")
class OnnxSource(LandmarkSource):
    """The `onnx` teacher: a network file read through its adapter (`landmarks.teacher_onnx`). Building
    it builds the source its decoding names: `3ddfa_62` → `Tddfa` (3D-style jaw), `landmarks_pose_139`
    → `OnnxTeacher`; each declares its own output contract."""

    packages = ("onnxruntime", "onnx")
    wants_gpu = True
    pose_is_fitted = False  # both decodings regress the pose
    DECODERS: ClassVar[dict[str, type[LandmarkSource]]] = {"3ddfa_62": Tddfa, "landmarks_pose_139": OnnxTeacher}

    def __new__(cls, adapter: OnnxAdapter | None = None, **kwargs):
        return cls.decoder(adapter)(adapter=adapter, **kwargs)

    @classmethod
    def decoder(cls, adapter: OnnxAdapter | None) -> type[LandmarkSource]:
        if adapter is None:
            raise ValueError("landmarks.teacher_onnx: the adapter spec is required with teacher: onnx")
        if adapter.decoding not in cls.DECODERS:
            raise ValueError(f"landmarks.teacher_onnx.decoding: {adapter.decoding!r} is not a teacher's output")
        return cls.DECODERS[adapter.decoding]

    @classmethod
    def model_files(cls, adapter: OnnxAdapter | None = None, **_):
        return cls.decoder(adapter).model_files(adapter=adapter)

    @classmethod
    def gives_jaw(cls, adapter: OnnxAdapter | None = None, **_) -> str | None:
        return cls.decoder(adapter).gives_jaw()

    @classmethod
    def check(cls, where, adapter: OnnxAdapter | None = None, **_):
        cls.decoder(adapter).check(where, adapter=adapter)
