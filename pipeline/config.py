"""The build manifest: a typed, validated YAML recipe. Errors name the file and the field.

`${VAR}` and `${VAR:-default}` in any string are replaced from the environment before validation,
so one manifest serves every machine (`manifests/paper.yaml` takes its roots that way).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pltd.backends import Choice
from pltd.pipeline.watch import Limits
from pltd.stages.assemble import AssembleSettings
from pltd.stages.landmarks.onnx_backend import PRESETS, OnnxAdapter
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.readers.base import get_reader, known_formats
from pltd.stages.readers.rows import IngestSettings
from pltd.validation import Strict, error_lines

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = PROJECT_ROOT / "manifests"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the field."""


class SourceConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    format: str
    root: str
    # A root without images is a start-up error unless this is true. Not part of the settings hash
    # (excluded from dumps): it decides whether a build starts, not what it writes.
    allow_empty: bool = Field(False, exclude=True)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_options(cls, data: Any) -> Any:
        """Format-specific keys (e.g. `boxes`) sit beside name/format/root in YAML; collect them."""
        if isinstance(data, dict):
            own = {"name", "format", "root", "allow_empty", "options"}
            extra = {k: v for k, v in data.items() if k not in own}
            data = {k: v for k, v in data.items() if k in own}
            data["options"] = {**data.get("options", {}), **extra}
        return data

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in known_formats():
            raise ValueError(f"unknown format {v!r}; known formats: {', '.join(known_formats())}")
        return v

    @model_validator(mode="after")
    def _check_options(self) -> SourceConfig:
        options_model = type(get_reader(self.format)).Options
        try:
            options_model(**self.options)
        except ValidationError as exc:
            raise ValueError(f"options of format {self.format!r}: {'; '.join(error_lines(exc))}") from None
        return self

    def reader_options(self):
        return type(get_reader(self.format)).Options(**self.options)


class IdentitiesConfig(Strict):
    """Algorithm 2 settings: two face-recognition networks, their thresholds, the FAISS search."""

    # registered face-recognition backends (stages/identities/networks.py `NETWORKS`)
    networks: list[str] = Field(default_factory=lambda: ["dlib", "dlib"], min_length=2, max_length=2)
    checkpoints: list[str | None] = Field(default_factory=lambda: [None, None], min_length=2, max_length=2)
    # insightface backbone.pth: the IResNet it holds, per network (stages/identities/networks.py)
    architectures: list[str | None] = Field(default_factory=lambda: [None, None], min_length=2, max_length=2)
    # onnx: an adapter per network, or a preset's name (insightface, insightface_mxnet, pltd_embedding);
    # null: insightface's preset chosen from the graph as insightface does
    onnx: list[OnnxAdapter | str | None] = Field(default_factory=lambda: [None, None], min_length=2, max_length=2)
    thresholds: list[float] | None = Field(None, min_length=2, max_length=2)  # cosine; else calibrated
    calibration_pairs: str | None = None  # insightface .bin, or LFW pairs.txt with calibration_images
    calibration_images: str | None = None
    within_dataset: bool = False  # also merge duplicates inside one dataset
    threshold_rule: Literal["far", "accuracy"] = "far"  # far: at a false-accept rate; accuracy: the paper's rule
    far: float = Field(1e-9, gt=0, lt=1)  # target false-accept rate (README: expected false merges)
    k: int = Field(8, ge=1)  # neighbours per query; re-asked with 4·k while all k are above the threshold
    exact_index_max: int = Field(200_000, ge=1)  # above: IVF index
    nlist: int | None = Field(None, ge=1)  # IVF lists; None: sqrt(indexed identities)
    nprobe: int = Field(16, ge=1)  # IVF lists searched per query
    gpu: bool = True  # faiss-gpu fp16 brute force (fp32 re-scoring) when faiss sees a GPU

    @field_validator("networks")
    @classmethod
    def _known_networks(cls, v: list[str]) -> list[str]:
        from pltd.stages.identities.networks import NETWORKS

        for k, name in enumerate(v):
            if name not in NETWORKS:
                raise ValueError(f"networks.{k}: unknown network {name!r}; known: {', '.join(NETWORKS.names())}")
        return v

    @field_validator("architectures")
    @classmethod
    def _known_architectures(cls, v: list[str | None]) -> list[str | None]:
        from pltd.stages.identities.networks import INSIGHTFACE_ARCHITECTURES

        for k, arch in enumerate(v):
            if arch is not None and arch not in INSIGHTFACE_ARCHITECTURES:
                known = ", ".join(INSIGHTFACE_ARCHITECTURES)
                raise ValueError(f"architectures.{k}: unknown architecture {arch!r}; known: {known}")
        return v

    @field_validator("onnx")
    @classmethod
    def _onnx_presets(cls, v: list) -> list:
        """Preset names become their adapters; every adapter must decode an embedding."""
        out = []
        for k, a in enumerate(v):
            if isinstance(a, str):
                names = [n for n, p in PRESETS.items() if p.decoding == "embedding"]
                if a not in names:
                    raise ValueError(f"onnx.{k}: unknown preset {a!r}; recognition presets: {', '.join(names)}")
                a = PRESETS[a]
            if a is not None and a.decoding != "embedding":
                raise ValueError(f"onnx.{k}: decoding {a.decoding!r}, a recognition model needs 'embedding'")
            if a is not None and a.path is not None:
                raise ValueError(f"onnx.{k}.path: name the model file in identities.checkpoints.{k} instead")
            out.append(a)
        return out

    @model_validator(mode="after")
    def _architectures_given(self) -> IdentitiesConfig:
        for k, (net, arch) in enumerate(zip(self.networks, self.architectures, strict=True)):
            if net == "insightface" and arch is None:
                raise ValueError(f"architectures.{k}: required with network insightface (iresnet18/34/50/100)")
        return self

    def network_options(self, k: int) -> dict:
        """Network k's backend options beyond its name and weights file (`create_network`'s kw)."""
        opts = {"architecture": self.architectures[k], "adapter": self.onnx[k]}
        return {key: v for key, v in opts.items() if v is not None}

    def backends(self) -> list[Choice]:
        """Each network's backend, the options it is built with and their manifest fields (start-up checks)."""
        from pltd.stages.identities.networks import NETWORKS

        fields = ("checkpoint", "checkpoints"), ("architecture", "architectures"), ("adapter", "onnx")
        return [
            Choice(
                f"identities.networks.{k}",
                NETWORKS.get(name),
                {"checkpoint": self.checkpoints[k], **self.network_options(k)},
                {option: f"identities.{field}.{k}" for option, field in fields},
            )
            for k, name in enumerate(self.networks)
        ]

    @model_validator(mode="after")
    def _thresholds_or_pairs(self) -> IdentitiesConfig:
        if self.thresholds is None and self.calibration_pairs is None:
            raise ValueError("set thresholds (two cosines) or calibration_pairs (a verification pair file)")
        if self.thresholds is not None and any(not -1 < t < 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be cosines in (-1, 1), got {self.thresholds}")
        return self


class Manifest(Strict):
    """The sections a stage reads are that stage's own settings models (one definition of each default)."""

    name: str
    prepare: Literal["sample"] | None = None  # "sample": materialise the embedded sample first
    sources: list[SourceConfig] = Field(min_length=1)
    ingest: IngestSettings = IngestSettings()
    landmarks: LandmarkSettings = LandmarkSettings()
    identities: IdentitiesConfig | None = None  # without it, embeddings and identities are not run
    output: AssembleSettings = AssembleSettings()
    limits: Limits = Limits()  # time limits per partition (pipeline/watch.py); in no stage's settings hash

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dup)}")
        return v

    def section_hash(self, *sections: str) -> str:
        """A hash of the settings that decide a stage's results (to refuse mixing runs)."""
        blob = json.dumps([self.model_dump(mode="json")[s] for s in sections], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def interpolate(value: Any, where: str, env: dict[str, str]) -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}" if where else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}.{i}", env) for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in env and env[var] != "":
                return env[var]
            if default is not None:
                return default
            raise ManifestError(f"{where}: environment variable {var} is not set (used as ${{{var}}})")

        return os.path.expanduser(_VAR.sub(sub, value)) if _VAR.search(value) or value.startswith("~") else value
    return value


def load_manifest(
    path: str | Path,
    roots: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Manifest:
    """Read, interpolate and validate a manifest; `roots` overrides source roots by name."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest file not found") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    env = dict(os.environ) if env is None else env
    for i, src in enumerate(raw.get("sources") or []):
        if isinstance(src, dict) and roots and src.get("name") in roots:
            raw["sources"][i] = {**src, "root": roots[src["name"]]}
    unknown = set(roots or {}) - {s.get("name") for s in raw.get("sources") or [] if isinstance(s, dict)}
    if unknown:
        raise ManifestError(f"{path}: --root names unknown source(s): {', '.join(sorted(unknown))}")
    try:
        raw = interpolate(raw, "", env)
        return Manifest.model_validate(raw)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    except ValidationError as exc:
        raise ManifestError("\n".join(error_lines(exc, f"{path}: "))) from None


def default_manifest() -> Path:
    return MANIFESTS / "sample.yaml"
