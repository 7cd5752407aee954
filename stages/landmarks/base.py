"""What every landmark source shares: the `Sample` it returns per view and the registry it joins.

The sources live in `sources.py` (dlib68, MediaPipe's graph, pltd's ResNet50, `onnx`),
`facemesh.py` (`mediapipe`: batched FaceMesh) and `tddfa.py` (`3ddfa_v2`); the package's
`__init__` imports them, so the registry is filled when the package is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from pltd.backends import Backend
from pltd.registry import Registry
from pltd.schemas import LANDMARK_COORDS
from pltd.stages.landmarks.views import View


@dataclass
class Sample:
    landmarks: np.ndarray  # 68 x 2, view pixels
    pose: tuple[float, float, float] | None  # yaw, pitch, roll (°), pltd.pose; None: not regressed (fitted later)
    source: str  # registry name
    mesh: np.ndarray | None = None  # MediaPipe: 468 x 3 (x, y in view pixels, z in the same scale)
    # a source that refines its own crop (3DDFA_V2, `teacher_passes` ≥ 2): its earlier passes' 68 points
    # (passes − 1, 68, 2), view pixels; the consensus counts them in the label's expected error only
    earlier: np.ndarray | None = None


class LandmarkSource(Backend):
    """A landmark source: `source(views) -> [Sample | None]`, built with the keyword arguments the stage
    passes every source (`mean_face`, `index_map`, `passes`, …; a source takes what it needs, `**_`
    the rest). Beyond `Backend`'s declarations it states its roles and its output contract."""

    roles: ClassVar[tuple[Literal["teacher", "second"], ...]] = ("teacher",)  # manifest fields it may fill
    # "3d": jaw points 0–16 are fixed model vertices, not the visible outline (algorithm.spread_points)
    jaw_style: ClassVar[Literal["2d", "3d"]] = "2d"
    pose_is_fitted: ClassVar[bool]  # True: samples carry pose None and the stage fits it (FittedPose)
    # True: trained on 300W-LP's own 68 points over its whole pose range (3DDFA_V2, pltd's teachers), so
    # its points are the PLTD's definition at every yaw; the consensus charges every other source with
    # its disagreement from these (fusion.consensus, step 2). dlib (near-frontal 300-W) and MediaPipe
    # (mesh vertices through an index map) are not.
    reference: ClassVar[bool] = False

    @classmethod
    def gives_jaw(cls, **options) -> str | None:
        """The jaw style this source gives with these manifest options, or None when its weights
        decide it (a network trained on a PLTD learns that PLTD's style): the start-up check of
        `landmarks.jaw_style` reads it."""
        return cls.jaw_style


SOURCES: Registry[type[LandmarkSource]] = Registry("landmark source")
register = SOURCES.register


def create_source(name: str, **kwargs):
    return SOURCES.create(name, **kwargs)


def source_names(role: str) -> list[str]:
    """The registered sources that may fill `role` ("teacher" or "second")."""
    return [n for n in SOURCES.names() if role in SOURCES.get(n).roles]


class FittedPose(LandmarkSource):
    """A source whose pose is a fit of its landmarks (the mean 3D face), not a network's estimate:
    its samples carry pose None and the stage fits the poses it needs, batched
    (`algorithm.fill_fitted_poses`), so that `Sample.pose` is always a pose or None."""

    mean_face: np.ndarray | None
    pose_is_fitted = True


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
