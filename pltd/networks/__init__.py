"""Network architectures: `create(name, **kwargs)` builds a registered one (timm-style).

Each architecture module registers its builders when imported; this package imports them all
below, so `create` never hides an import. (The face-recognition *backends* of the identities
stage are another registry, `pltd.stages.identities.networks.NETWORKS`.)
"""

from __future__ import annotations

import torch.nn as nn

from pltd.registry import Registry
from pltd.schemas import LANDMARK_COORDS

ARCHITECTURES: Registry = Registry("network architecture")
register = ARCHITECTURES.register


def create(name: str, **kwargs) -> nn.Module:
    return ARCHITECTURES.create(name, **kwargs)


def split_landmarks_pose(out):
    """A (B, 139) landmark+pose output (tensor or array) → {"landmarks": (B, 136), "pose": (B, 3)}."""
    return {"landmarks": out[:, :LANDMARK_COORDS], "pose": out[:, LANDMARK_COORDS:]}


from pltd.networks import iresnet, resnet  # noqa: E402, F401  (they register; after `register` exists)
