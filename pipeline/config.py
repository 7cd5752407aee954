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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pltd.stages.readers.base import get_reader, known_formats

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = PROJECT_ROOT / "manifests"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    format: str
    root: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_options(cls, data: Any) -> Any:
        """Format-specific keys (e.g. `boxes`) sit beside name/format/root in YAML; collect them."""
        if isinstance(data, dict):
            own = {"name", "format", "root", "options"}
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
            msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"options of format {self.format!r}: {msgs}") from None
        return self

    def reader_options(self):
        return type(get_reader(self.format)).Options(**self.options)


class IngestConfig(Strict):
    rows_per_partition: int = Field(1000, ge=1, le=1_000_000)
    max_image_pixels: int = Field(64_000_000, ge=1)
    min_image_side: int = Field(8, ge=1)
    verify: Literal["full", "header"] = "full"


class LandmarksConfig(Strict):
    """Algorithm 1 settings."""

    views: int = Field(8, ge=1, le=64)  # N
    view_size: int = Field(256, ge=64, le=1024)  # pixels of each square view
    teacher: Literal["dlib68", "resnet50"] = "dlib68"
    teacher_checkpoint: str | None = None
    second: Literal["mediapipe", "none"] = "mediapipe"
    index_map: str | None = None  # default: the shipped map (stages/data/mediapipe_index_map.json)
    mean_face: str | None = None  # default: the shipped mean 3D face
    blink: Literal["mediapipe_ear", "resnet18", "none"] = "mediapipe_ear"
    blink_checkpoint: str | None = None
    pose_from: Literal["teacher", "own"] = "teacher"  # MediaPipe samples carry the teacher's P3 (paper)
    t_d: float = Field(0.05, gt=0, le=1)
    keep: int = Field(3, ge=1)  # selective fitting stops at this many samples
    min_samples: int = Field(3, ge=1)  # fewer valid samples: too_few_valid_samples
    min_face_fraction: float = Field(0.1, gt=0, lt=1)
    min_x_spread: float = Field(0.03, ge=0, lt=1)
    audit: bool = True  # also pseudo-label ground-truth sources, for the audit
    batch_images: int = Field(32, ge=1)  # images whose views a torch teacher runs in one batch


class IdentitiesConfig(Strict):
    """Algorithm 2 settings: two face-recognition networks, their thresholds, the FAISS search."""

    networks: list[Literal["dlib", "checkpoint", "facenet"]] = Field(
        default_factory=lambda: ["dlib", "dlib"], min_length=2, max_length=2
    )
    checkpoints: list[str | None] = Field(default_factory=lambda: [None, None], min_length=2, max_length=2)
    thresholds: list[float] | None = Field(None, min_length=2, max_length=2)  # cosine; else calibrated
    calibration_pairs: str | None = None  # insightface .bin, or LFW pairs.txt with calibration_images
    calibration_images: str | None = None
    within_dataset: bool = False  # also merge duplicates inside one dataset
    threshold_rule: Literal["far", "accuracy"] = "far"  # far: at a false-accept rate; accuracy: the paper's rule
    far: float = Field(1e-9, gt=0, lt=1)  # target false-accept rate (README: expected false merges)
    k: int = Field(8, ge=1)  # neighbours per query; re-asked with 4·k while all k are above the threshold
    exact_index_max: int = Field(200_000, ge=1)  # above: IVF index
    nlist: int | None = Field(None, ge=1)  # IVF lists; None: 4·sqrt(indexed identities)
    nprobe: int = Field(32, ge=1)  # IVF lists searched per query
    gpu: bool = True  # faiss-gpu fp16 brute force (fp32 re-scoring) when faiss sees a GPU

    @model_validator(mode="after")
    def _thresholds_or_pairs(self) -> IdentitiesConfig:
        if self.thresholds is None and self.calibration_pairs is None:
            raise ValueError("set thresholds (two cosines) or calibration_pairs (a verification pair file)")
        if self.thresholds is not None and any(not -1 < t < 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be cosines in (-1, 1), got {self.thresholds}")
        return self


class OutputConfig(Strict):
    """The PLTD: face-centred regions, shards."""

    region_long_side: int = Field(256, ge=32, le=4096)  # JPEG long side at most this
    region_scale: float = Field(2.0, ge=1.0, le=4.0)  # region side / the landmarks' box side
    rows_per_shard: int = Field(10_000, ge=1)
    bytes_per_shard: int | None = Field(None, ge=1_000_000)  # also cut a shard at about this size
    row_group_rows: int = Field(1000, ge=1)
    jpeg_quality: int = Field(95, ge=1, le=100)


class Manifest(Strict):
    name: str
    prepare: Literal["sample"] | None = None  # "sample": materialise the embedded sample first
    sources: list[SourceConfig] = Field(min_length=1)
    ingest: IngestConfig = IngestConfig()
    landmarks: LandmarksConfig = LandmarksConfig()
    identities: IdentitiesConfig | None = None  # without it, embeddings and identities are not run
    output: OutputConfig = OutputConfig()

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
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field"
            lines.append(f"{path}: {loc}: {msg}")
        raise ManifestError("\n".join(lines)) from None


def default_manifest() -> Path:
    return MANIFESTS / "sample.yaml"
