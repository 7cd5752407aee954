"""Network architectures: `create(name, **kwargs)` builds a registered one (timm-style).

Each architecture module registers its builders with `_registry.py` when imported; this package
imports them all, so `create` never hides an import. (The face-recognition *backends* of the identities
stage are another registry, `pltd.stages.identities.networks.NETWORKS`.)
"""

from __future__ import annotations

from pltd.networks import iresnet, resnet  # noqa: F401  (importing them registers their builders)
from pltd.networks._registry import ARCHITECTURES, create, register
from pltd.schemas import LANDMARK_COORDS

__all__ = ["ARCHITECTURES", "create", "register", "split_landmarks_pose"]


def split_landmarks_pose(out):
    """A (B, 139) landmark+pose output (tensor or array) → {"landmarks": (B, 136), "pose": (B, 3)}."""
    return {"landmarks": out[:, :LANDMARK_COORDS], "pose": out[:, LANDMARK_COORDS:]}
