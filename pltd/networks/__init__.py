"""Network registry: `create(name, **kwargs)` builds a registered architecture (timm-style)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

NETWORKS: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    NETWORKS[fn.__name__] = fn
    return fn


def create(name: str, **kwargs) -> nn.Module:
    from pltd.networks import iresnet, resnet  # noqa: F401  (they register)

    if name not in NETWORKS:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[name](**kwargs)
