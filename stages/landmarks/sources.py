"""Landmark sources of Algorithm 1 (a registry): teachers and the second source (MediaPipe).

Each source maps a list of views to one `Sample` per view (68 points in view pixels, a pose, or
None when it finds no face). Heavy models are built once per worker through `worker_cache`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pltd.registry import Registry
from pltd.schemas import LANDMARK_COORDS, LANDMARKS_POSE
from pltd.stages.landmarks.geometry import fit_pose
from pltd.stages.landmarks.views import View


@dataclass
class Sample:
    landmarks: np.ndarray  # 68 x 2, view pixels
    pose: tuple[float, float, float] | Callable[[], tuple[float, float, float]] | None  # yaw, pitch, roll (°)
    source: str  # registry name
    mesh: np.ndarray | None = None  # MediaPipe: 468 x 3 (x, y in view pixels, z in the same scale)


SOURCES = Registry("landmark source")
register = SOURCES.register


def create_source(name: str, **kwargs):
    return SOURCES.create(name, **kwargs)


def shipped_model(filename: str) -> str:
    """A model file of the `face_recognition_models` package, located without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{filename}: package face_recognition_models is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"dlib model file {path} not found (reinstall face-recognition-models)")
    return str(path)


class FittedPose:
    """Pose by fitting the mean 3D face to a sample's 68 points, done on demand: `Sample.pose` is a
    function, so that selective fitting computes poses only for the samples it keeps."""

    mean_face: np.ndarray | None
    pose_is_fitted = True  # the pose is a fit of the landmarks, not the network's own estimate

    def _pose(self, pts: np.ndarray):
        if self.mean_face is None:
            return None
        mean_face = self.mean_face
        return lambda: fit_pose(pts, mean_face)[0]


@register("dlib68")
class Dlib68(FittedPose):
    """dlib's iBUG 300-W 68-point shape predictor; pose by fitting the mean 3D face."""

    def __init__(self, mean_face: np.ndarray | None, **_):
        import dlib

        self.dlib = dlib
        self.predictor = dlib.shape_predictor(shipped_model("shape_predictor_68_face_landmarks.dat"))
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
            out.append(Sample(pts, self._pose(pts), self.name))
        return out


@register("mediapipe_graph")
class MediaPipeMesh(FittedPose):
    """MediaPipe FaceMesh's own graph (468 points; re-detects the face in every view, one view at a
    time) → 68 through the index map; pose by fitting the mean face. The default `mediapipe` is the
    same network batched on the known region (`facemesh.py`)."""

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
            out.append(Sample(pts, self._pose(pts), self.name, mesh))
        return out


@register("resnet50")
class ResNetTeacher:
    """The paper's teacher: a ResNet50 trained by `pltd train --preset teacher-300wlp` (68x2 + 3 outputs).

    Outputs: landmarks as fractions of the input side (x, y interleaved), then yaw, pitch, roll in
    degrees. Runs batched over every view it is given, on the GPU when there is one.
    """

    pose_is_fitted = False  # it regresses the pose (trained on 300W-LP's Pose_Para)

    def __init__(self, checkpoint: str | None, batch_size: int = 128, device: str | None = None, **_):
        import torch

        from pltd.checkpoints import load_model

        self.torch = torch
        self.model, ckpt = load_model(checkpoint, task="landmarks_pose", role="landmarks.teacher_checkpoint")
        self.input_size = int(ckpt["input_size"])
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # channels_last: oneDNN's faster convolution layout on CPUs (~25 % here) and on GPUs
        self.model.to(self.device, memory_format=torch.channels_last)
        self.batch_size = batch_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 (S = input size) → N x 139."""
        torch = self.torch
        outs = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[i : i + self.batch_size]).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)
                outs.append(self.model(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, LANDMARKS_POSE), np.float32)

    def __call__(self, views: list[View]) -> list[Sample | None]:
        return samples_from_139(self.predict(resized(views, self.input_size)), views, self.name)


def resized(views: list[View], size: int) -> np.ndarray:
    """N × size × size × 3 uint8: the views at a network's input size."""
    from PIL import Image

    return np.stack(
        [
            v.image if v.image.shape[0] == size else np.asarray(Image.fromarray(v.image).resize((size, size)))
            for v in views
        ]
    )


def samples_from_139(pred: np.ndarray, views: list[View], name: str) -> list[Sample | None]:
    """Decode pltd's teacher output (`landmarks_pose_139`): 68 (x, y) as fractions of the input side,
    then yaw, pitch, roll in degrees."""
    return [
        Sample(
            p[:LANDMARK_COORDS].reshape(68, 2) * v.image.shape[0], tuple(float(a) for a in p[LANDMARK_COORDS:]), name
        )
        for v, p in zip(views, pred, strict=True)
    ]


# Sources defined in their own modules register here, at import (they import `Sample` and `register`
# from this module, defined above): `mediapipe` (batched FaceMesh), `3ddfa_v2` and `onnx`.
from pltd.stages.landmarks import facemesh, onnx_backend, tddfa  # noqa: E402, F401

SOURCES.add("onnx", onnx_backend.onnx_teacher)
