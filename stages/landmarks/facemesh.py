"""MediaPipe FaceMesh without MediaPipe's graph: its landmark network, batched over views, on a known region.

MediaPipe's `FaceMesh(static_image_mode=True)` re-detects the face in every view although pltd
already knows its box, and runs one view at a time. Here the graph's own network
(`mediapipe/modules/face_landmark/face_landmark.tflite` in the mediapipe 0.10.21 wheel, read at run
time) runs through LiteRT (`ai-edge-litert`) on every view of a chunk in one call, with the crop,
normalisation and projection the graph applies (mediapipe v0.10.21
`mediapipe/modules/face_landmark/face_landmark_cpu.pbtxt`: ImageToTensorCalculator 192×192, float
range [0, 1], border replicate, rotated-rect → tensor by a perspective warp of the rect's corners;
TensorsToLandmarksCalculator ÷ 192; LandmarkProjectionCalculator: rotate about the rect centre,
scale by its size, z scaled as x; the face flag through a sigmoid, thresholded at 0.5).

The region: MediaPipe's `FaceLandmarkLandmarksToRoi` rule (the box of the points, 1.5× its long
side, square, rotated so the eye corners 33 → 263 are level) applied to a first pass whose region
is the view's face box ×`BOX_SCALE` (no rotation). Equivalence with the graph on the region the
graph chose: tests/stages/landmarks/test_facemesh.py; speed: benchmarks/facemesh.py.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from pltd.stages.landmarks.base import FittedPose, Sample, register
from pltd.stages.landmarks.views import View

SIZE = 192
ROI_SCALE = 1.5  # FaceLandmarkLandmarksToRoi / FaceDetectionFrontDetectionToRoi: scale_x = scale_y = 1.5
# first pass: box side × this; closest to the graph on 192 sample views (median NME vs the graph
# after 2 passes: ×1.1 0.015, ×1.25 0.013, ×1.4 0.0125, ×1.5 0.0145)
BOX_SCALE = 1.4
EYES = (33, 263)  # rotation_vector_start/end_keypoint_index of FaceLandmarkLandmarksToRoi


def model_path() -> Path:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed (face_landmark.tflite ships in its wheel)")
    path = Path(next(iter(spec.submodule_search_locations))) / "modules" / "face_landmark" / "face_landmark.tflite"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (mediapipe==0.10.21 ships it)")
    return path


def roi_from_box(box, scale: float = BOX_SCALE) -> np.ndarray:
    """(cx, cy, side, rotation) in pixels / radians: the square of the box's long side × scale."""
    x0, y0, x1, y1 = box[:4]
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0), 0.0])


def roi_from_mesh(mesh: np.ndarray, scale: float = ROI_SCALE) -> np.ndarray:
    """MediaPipe's FaceLandmarkLandmarksToRoi: axis-aligned box of the points, rotation from the eyes."""
    (x0, y0), (x1, y1) = mesh[:, :2].min(axis=0), mesh[:, :2].max(axis=0)
    (ax, ay), (bx, by) = mesh[EYES[0], :2], mesh[EYES[1], :2]
    rot = -np.arctan2(-(by - ay), bx - ax)  # target angle 0
    rot = rot - 2 * np.pi * np.floor((rot + np.pi) / (2 * np.pi))
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0), rot])


def warp(image: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The 192×192 float [0, 1] tensor of the rotated square `roi`: the rect's corners to the tensor's."""
    src = cv2.boxPoints(((float(roi[0]), float(roi[1])), (float(roi[2]), float(roi[2])), float(np.degrees(roi[3]))))
    dst = np.float32([[0, SIZE], [0, 0], [SIZE, 0], [SIZE, SIZE]])  # bottom-left, top-left, top-right, bottom-right
    m = cv2.getPerspectiveTransform(np.float32(src), dst)
    out = cv2.warpPerspective(image, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.astype(np.float32) * np.float32(1 / 255)


def project(raw: np.ndarray, rois: np.ndarray) -> np.ndarray:
    """(N, 1404) network outputs → (N, 468, 3) image pixels (z in the same scale as x)."""
    p = raw.reshape(len(raw), 468, 3) / SIZE
    x, y = p[..., 0] - 0.5, p[..., 1] - 0.5
    c, s = np.cos(rois[:, 3:4]), np.sin(rois[:, 3:4])
    side = rois[:, 2:3]
    return np.stack(
        [(c * x - s * y) * side + rois[:, 0:1], (s * x + c * y) * side + rois[:, 1:2], p[..., 2] * side], -1
    )


class MeshNetwork:
    """face_landmark.tflite through LiteRT, any batch size (`resize_tensor_input`)."""

    def __init__(self, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(model_path()), num_threads=threads)
        self.input = self.interp.get_input_details()[0]["index"]
        outs = {o["shape"][-1]: o["index"] for o in self.interp.get_output_details()}
        self.points, self.flag = outs[1404], outs[1]
        self.batch = 0

    def __call__(self, tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 192, 192, 3) float → (N, 1404) raw points, (N,) face probability."""
        if len(tensors) != self.batch:
            self.interp.resize_tensor_input(self.input, [len(tensors), SIZE, SIZE, 3])
            self.interp.allocate_tensors()
            self.batch = len(tensors)
        self.interp.set_tensor(self.input, np.ascontiguousarray(tensors, np.float32))
        self.interp.invoke()
        raw = self.interp.get_tensor(self.points).reshape(len(tensors), -1)
        flag = self.interp.get_tensor(self.flag).reshape(-1)
        return raw.copy(), 1 / (1 + np.exp(-flag))

    def meshes(self, images: list[np.ndarray], rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not images:
            return np.zeros((0, 468, 3)), np.zeros(0)
        raw, prob = self(np.stack([warp(img, r) for img, r in zip(images, rois, strict=True)]))
        return project(raw, rois), prob


@functools.cache
def _network(threads: int) -> MeshNetwork:
    return MeshNetwork(threads)


@register("mediapipe")
class BatchedMesh(FittedPose):
    """FaceMesh's network on the known face region of every view, all views in one call; 468 → 68
    through the index map; pose by fitting the mean face (as `mediapipe_graph`)."""

    roles = ("second",)
    packages = ("ai_edge_litert", "mediapipe")  # LiteRT runs the network file mediapipe's wheel ships

    def __init__(self, mean_face: np.ndarray | None, index_map: np.ndarray, passes: int = 2, threads: int = 1, **_):
        self.net = _network(threads)
        self.mean_face, self.index_map, self.passes = mean_face, index_map, passes

    def __call__(self, views: list[View]) -> list[Sample | None]:
        images = [v.image for v in views]
        rois = np.stack([roi_from_box(v.face) for v in views]) if views else np.zeros((0, 4))
        meshes, prob = self.net.meshes(images, rois)
        for _ in range(self.passes - 1):
            rois = np.stack([roi_from_mesh(m) for m in meshes]) if views else rois
            meshes, prob = self.net.meshes(images, rois)
        out: list[Sample | None] = []
        for mesh, p in zip(meshes, prob, strict=True):
            pts = mesh[self.index_map, :2]
            out.append(Sample(pts, None, self.name, mesh) if p >= 0.5 else None)
        return out
