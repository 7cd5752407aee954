"""Eye blink: σ ∈ [0, 1] per eye and AdjustUpperEyes (Algorithm 1, lines 5–7).

Eyes are named by their iBUG points: eye 0 = points 36–41 (the subject's right eye, on the image's
left), eye 1 = points 42–47. Backends: `mediapipe_ear`, the eye aspect ratio (Soukupová & Čech,
2016) of the FaceMesh eyelids mapped linearly to σ = clip((EAR_OPEN − EAR) / (EAR_OPEN −
EAR_CLOSED), 0, 1); `resnet18`, the paper's blink network (a checkpoint of `pltd train
--preset blink`: one logit per 64x64 eye crop); `onnx` (onnx_backend.py); `none`. They form a
registry (`BLINKS`), each declaring what it reads: the second source's mesh or the teacher's eye crops.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from pltd.backends import Backend, PltdCheckpoint
from pltd.registry import Registry

# FaceMesh eyelid vertices, EAR order p1..p6 (corner, upper, upper, corner, lower, lower), per iBUG eye.
EAR_INDICES = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))
EAR_OPEN, EAR_CLOSED = 0.20, 0.08
# iBUG upper-lid points and the lower-lid points below them, per eye.
UPPER_LOWER = (((37, 41), (38, 40)), ((43, 47), (44, 46)))


def eye_aspect_ratio(mesh: np.ndarray) -> tuple[float, float]:
    out = []
    for p1, p2, p3, p4, p5, p6 in EAR_INDICES:
        pts = np.asarray(mesh, float)[:, :2]
        vertical = np.linalg.norm(pts[p2] - pts[p6]) + np.linalg.norm(pts[p3] - pts[p5])
        out.append(float(vertical / (2 * max(np.linalg.norm(pts[p1] - pts[p4]), 1e-6))))
    return out[0], out[1]


def sigma_from_ear(ear: float) -> float:
    return float(np.clip((EAR_OPEN - ear) / (EAR_OPEN - EAR_CLOSED), 0.0, 1.0))


def adjust_upper_eyes(landmarks: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """AdjustUpperEyes: each upper-lid point moves toward the lower-lid point below it by σ times their gap."""
    out = np.asarray(landmarks, float).reshape(68, 2).copy()
    for eye, s in zip(UPPER_LOWER, sigma, strict=True):
        for up, low in eye:
            out[up] += s * (out[low] - out[up])
    return out


def eye_crops(image: np.ndarray, landmarks: np.ndarray, size: int = 64) -> list[np.ndarray]:
    """Square crops around each iBUG eye (side = 2x the corner-to-corner width), resized to size."""
    from PIL import Image

    pts = np.asarray(landmarks, float).reshape(68, 2)
    pil = Image.fromarray(image)
    crops = []
    for sl in (slice(36, 42), slice(42, 48)):
        eye = pts[sl]
        c = eye.mean(axis=0)
        half = max(np.linalg.norm(eye[0] - eye[3]), 2.0)
        box = (c[0] - half, c[1] - half, c[0] + half, c[1] + half)
        crops.append(np.asarray(pil.transform((size, size), Image.EXTENT, box, Image.BILINEAR)))
    return crops


class BlinkBackend(Backend):
    """A blink backend; `reads` says what the stage hands it (stage.blink_sigmas)."""

    reads: ClassVar[Literal["mesh", "eye_crops", "nothing"]]

    def __init__(self, **_):
        pass


BLINKS: Registry[type[BlinkBackend]] = Registry("blink backend")


@BLINKS.register("mediapipe_ear")
class EarBlink(BlinkBackend):
    """σ from the eye aspect ratio of the second source's FaceMesh eyelids (`sigma_from_ear`)."""

    reads = "mesh"


@BLINKS.register("none")
class NoBlink(BlinkBackend):
    """No blink estimate: upper eyelids are left as the sources put them."""

    reads = "nothing"


class CropBlink(BlinkBackend):
    """A network over the teacher's eye crops of side `size`: `backend(crops) -> σ` per crop."""

    reads = "eye_crops"
    size: int


@BLINKS.register("resnet18")
class ResNetBlink(PltdCheckpoint, CropBlink):
    """The paper's eye-blink network: σ = sigmoid(logit) per eye crop (fed through the checkpoint's
    input contract), batched."""

    TASK = "blink"

    def __init__(self, checkpoint: str | None, device: str | None = None, **_):
        import torch

        from pltd.checkpoints import load_model

        self.torch = torch
        self.model, ckpt = load_model(checkpoint, task=self.TASK, role="landmarks.blink_checkpoint")
        self.contract = ckpt["input"]
        self.size = self.contract.input_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        if not crops:
            return np.zeros(0)
        x = self.contract.torch_input(torch.from_numpy(np.stack(crops)).to(self.device))
        with torch.inference_mode():
            return torch.sigmoid(self.model(x)[:, 0]).float().cpu().numpy()
