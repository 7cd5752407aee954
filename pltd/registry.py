"""A named registry of backends (landmark sources, face-recognition networks): register, create."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self.items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def deco(cls):
            self.items[name] = cls
            cls.name = name
            return cls

        return deco

    def create(self, name: str, **kwargs) -> Any:
        if name not in self.items:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self.items))}")
        return self.items[name](**kwargs)
