"""The one registry class: registration at import, the duplicate-name guard, lookups that name the known entries.

Consistency tests (pltd's registries against the rules in `pltd/registry.py`).
"""

from __future__ import annotations

import pytest

from pltd.registry import Registry


def test_register_get_create_and_names():
    reg = Registry("widget")

    @reg.register("round")
    class Round:
        def __init__(self, r=1):
            self.r = r

    @reg.register
    def square(side=2):
        return side * side

    assert reg.names() == ["round", "square"] and "round" in reg and Round.name == "round"
    assert reg.create("round", r=3).r == 3 and reg.create("square", side=3) == 9
    with pytest.raises(KeyError, match="unknown widget 'oval'; known: round, square"):
        reg.get("oval")


def test_a_second_entry_under_a_taken_name_is_refused():
    reg = Registry("widget")
    reg.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a")(type("B", (), {}))


def test_the_four_registries_are_filled_at_import():
    """Importing each package registers its built-ins: no lookup imports anything."""
    from pltd.networks import ARCHITECTURES
    from pltd.stages.identities.networks import NETWORKS
    from pltd.stages.landmarks.sources import SOURCES
    from pltd.stages.readers.base import READERS

    assert READERS.names() == ["300w_lp", "aflw2000", "image_folder", "insightface_rec", "vggface2"]
    assert {"iresnet50", "iresnet50_multi", "resnet50", "resnet18"} <= set(ARCHITECTURES.names())
    assert {"dlib68", "resnet50", "mediapipe"} <= set(SOURCES.names())
    assert NETWORKS.names() == ["checkpoint", "dlib", "facenet", "insightface", "onnx"]
    assert all(isinstance(r, Registry) for r in (READERS, ARCHITECTURES, SOURCES, NETWORKS))
