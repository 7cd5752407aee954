"""One named registry for every kind of backend: source formats, landmark sources, face-recognition
networks, network architectures.

Entries register when their module is imported (timm's way): a package's `__init__` imports its
modules, so a lookup never hides an import. A second entry under a taken name is an error (two
plugins silently replacing each other is how a build runs the wrong model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        old = self._items.get(name)
        if old is not None and _origin(old) != _origin(obj):
            raise ValueError(f"{self.kind} {name!r} is registered twice: {_origin(old)} and {_origin(obj)}")
        self._items[name] = obj
        return obj

    def register(self, name: str | Callable | None = None) -> Any:
        """`@reg.register("name")`, or bare `@reg.register` to use the object's `__name__`."""
        if callable(name):
            return self.add(name.__name__, name)

        def deco(obj: T) -> T:
            if isinstance(obj, type):
                obj.name = name or obj.__name__  # a class knows the name it is registered under
            return self.add(name or obj.__name__, obj)

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, **kwargs) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _origin(obj: Any) -> str:
    """Where an entry was defined; the same definition re-registered (a module reloaded) is not a clash."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
