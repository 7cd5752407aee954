"""The architecture registry (timm's `_registry.py`): `register` for the architecture modules, `create`
for everyone else. Its own module, so `iresnet` and `resnet` import it without importing the package
`__init__` that imports them."""

from __future__ import annotations

import torch.nn as nn

from pltd.registry import Registry

ARCHITECTURES: Registry = Registry("network architecture")
register = ARCHITECTURES.register


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture: `create("iresnet50", input_size=112)`."""
    return ARCHITECTURES.create(name, **kwargs)
