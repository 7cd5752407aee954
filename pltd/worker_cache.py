"""Per-worker cache: heavy objects (models) are built once per worker process, never per task.

Dask workers here are processes with one thread each and live for the whole build, so a
module-level dict is the cache; the lock covers a worker run with several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

_cache: dict[Hashable, Any] = {}
_slots: dict[Hashable, Hashable] = {}  # slot → the key it holds
_lock = threading.Lock()
builds: dict[Hashable, int] = {}  # how many times each key was built in this process (tests read it)


def cached(key: Hashable, factory: Callable[[], Any], slot: Hashable | None = None) -> Any:
    """Return the object for `key`, building it with `factory()` the first time in this process.
    With a `slot`, the slot holds one key: a new key replaces (frees) the object built for the last."""
    with _lock:
        if slot is not None and _slots.get(slot, key) != key:
            _cache.pop(_slots[slot], None)
        if slot is not None:
            _slots[slot] = key
        if key not in _cache:
            _cache[key] = factory()
            builds[key] = builds.get(key, 0) + 1
        return _cache[key]


def clear() -> None:
    with _lock:
        _cache.clear()
        _slots.clear()
