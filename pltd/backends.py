"""What a model backend declares about itself, and a backend as the manifest chooses it for a role.

Every landmark source, blink backend and face-recognition network is a class registered under its
manifest name (`pltd.registry`) that states, as class attributes, what the build must know before
any work starts: the packages it imports, whether it wants a GPU, and the model files a given set
of options makes it read (`model_files`), plus a deeper look at those files (`check`: a checkpoint
of the wrong task or architecture). The catalog's start-up checks, the settings' allowed names and
the docs read these declarations; nothing lists backends by hand. Adding a backend is one module
and one registration (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Backend:
    """Base class of every model backend; subclasses override what differs."""

    name: ClassVar[str]  # the manifest name, set by `Registry.register`
    packages: ClassVar[tuple[str, ...]] = ()  # import names (pipeline/stage.py `PACKAGES`: what to install)
    wants_gpu: ClassVar[bool] = False  # runs a network on the GPU when the worker has one

    @classmethod
    def model_files(cls, **options: Any) -> dict[str, tuple[bool, str | None]]:
        """Option → (required, path) of each model file these options make the backend read. The option
        may be dotted (`adapter.path`); a key that is no option names a file of an installed package."""
        return {}

    @classmethod
    def check(cls, where: Callable[[str], str], **options: Any) -> None:
        """Start-up look inside the model files (task, architecture, output width); raises ValueError or
        OSError naming the manifest field, `where(key)` for a `model_files` key. The files exist when it runs."""


class PltdCheckpoint(Backend):
    """A network read from a checkpoint of `pltd train` (the `checkpoint` option) trained for `TASK`;
    the start-up look builds it on the CPU, so a file of another task or architecture stops the build."""

    TASK: ClassVar[str]
    packages = ("torch",)
    wants_gpu = True

    @classmethod
    def model_files(cls, checkpoint: str | None = None, **_: Any) -> dict[str, tuple[bool, str | None]]:
        return {"checkpoint": (True, checkpoint)}

    @classmethod
    def check(cls, where: Callable[[str], str], checkpoint: str | None = None, **_: Any) -> None:
        from pltd.checkpoints import load_model

        load_model(checkpoint, task=cls.TASK, role=where("checkpoint"))


@dataclass(frozen=True)
class Choice:
    """A backend the manifest chose for one role, with the options it is built with and the manifest
    field each option comes from. Workers build from `options`; the start-up checks read the same."""

    role: str  # the manifest field naming the backend, e.g. "landmarks.teacher"
    backend: type[Backend]
    options: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # option → manifest field

    def model_files(self) -> dict[str, tuple[bool, str | None]]:
        """Manifest field → (required, path) of every model file this choice reads."""
        return {self.where(key): value for key, value in self.backend.model_files(**self.options).items()}

    def where(self, key: str) -> str:
        """The manifest field of a `model_files` key: `adapter.path` → `landmarks.teacher_onnx.path`; a
        file the backend finds itself (in a package) is named by the role."""
        head, _, rest = key.partition(".")
        if head in self.fields:
            return f"{self.fields[head]}.{rest}" if rest else self.fields[head]
        return f"{self.role} ({self.backend.name}: {key})"

    def check(self) -> None:
        self.backend.check(self.where, **self.options)
