"""Training configuration: one typed config, loaded from a preset (trainer/presets/*.yaml) with
`--set key=value` overrides; errors name the preset and the field."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pltd.input_contract import InputContract
from pltd.validation import error_lines

Task = Literal["fr", "fld", "hpe", "blink"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "custom"
    arch: str
    arch_kwargs: dict[str, Any] = {}
    tasks: list[Task] = Field(min_length=1)
    input_size: int = Field(112, ge=16)
    # losses (Eqs. 1–10)
    s: float = 64.0
    m1: float = 0.3
    m2: float = 0.7  # 0: CosFace
    lambda1: float = 100.0  # L_FLD weight
    lambda2: float = 10.0  # L_HPE weight
    lambda_p: Literal["dynamic", 0, 1] = "dynamic"  # λ_P of Eq. 3: computed per batch (Eq. 9), or fixed
    partial_fc: float = Field(1.0, gt=0, le=1)  # sampled fraction of class centres
    # related systems' options, all off by default so that a preset trains the paper's model
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"  # fixed λ1, λ2 or learned (Kendall/MOS)
    uncertainty_init: Literal["zero", "lambdas"] = "zero"  # start s_i at 0 or at the fixed weights
    pose_head: str = "euler"  # IResNet-Multi's pose branch, one of pltd.networks.iresnet.POSE_HEADS
    visibility_head: bool = False  # per-landmark self-occlusion logits (IResNet-Multi)
    lambda_vis: float = 1.0  # visibility BCE weight (fixed weighting)
    # optimisation
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(20, ge=1)
    lr: float = 0.01
    lr_decay: float = 0.9  # × per epoch (paper)
    warmup_steps: int = Field(0, ge=0)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = 5.0
    diverge_factor: float | None = Field(100.0, gt=1)  # stop when loss > this × its running mean (null: NaN/inf only)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = True
    compile: bool = True  # torch.compile on CUDA (CPU runs stay eager); false: eager everywhere
    tf32: bool = True  # CUDA: TF32 tensor cores for fp32 matmuls/convolutions (the fp32 margin head)
    # data and bookkeeping
    shuffle_buffer: int = 2048
    num_workers: int | None = Field(None, ge=0)  # DataLoader workers; default: CPUs per rank − 1 (≤ 16)
    prefetch_factor: int = Field(4, ge=1)  # batches each worker keeps ready
    sources: list[str] = []  # train on rows of these sources only (empty: all)
    label_kinds: list[Literal["pseudo", "ground_truth"]] = []  # … of these label kinds only (empty: all)
    balance: Literal["none", "yaw"] = "none"  # yaw: pose-balanced draws, weight ∝ 1 / rows in the yaw bin
    balance_bins: int = Field(12, ge=1)  # equal-width yaw bins over balance_range
    balance_range: tuple[float, float] = (-90.0, 90.0)
    balance_cap: float = Field(4.0, ge=1)  # the most draws of one row per epoch (expected)
    progress_seconds: float = Field(10.0, gt=0)  # a progress line on stderr at step 1, then this often
    export_torchscript: bool = False  # also write OUT/model.torchscript.pt (model.pt is always written)
    export_onnx: bool = False  # also write OUT/model.<head>.onnx, dynamic batch (trainer/export.py)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    verification: list[str] = []  # insightface .bin pair files to monitor (LFW, CFP-FP, AgeDB)
    verify_every: int = 2000
    mean_face: str | None = None  # for λ_P; default: the shipped one

    def input_contract(self) -> InputContract:
        """What the network is fed, and what its checkpoint records: pltd's contract at `input_size`."""
        return InputContract(input_size=self.input_size)

    @model_validator(mode="after")
    def _heads_are_network_options(self) -> TrainConfig:
        """`pose_head` (one of the network's `POSE_HEADS`) and `visibility_head` build the network, so they
        go into `arch_kwargs` (which the exported checkpoint records); the defaults leave `arch_kwargs` untouched."""
        from pltd.networks.iresnet import POSE_HEADS  # the network's own list (imports torch: training only)

        if self.pose_head not in POSE_HEADS:
            raise ValueError(f"pose_head: {self.pose_head!r}: expected one of {', '.join(POSE_HEADS)}")
        heads = {"pose_head": self.pose_head, "visibility_head": self.visibility_head}
        heads = {k: v for k, v in heads.items() if v != type(self).model_fields[k].default}
        for k, v in heads.items():
            if k in self.arch_kwargs and self.arch_kwargs[k] != v:
                raise ValueError(f"{k}: {v!r} disagrees with arch_kwargs.{k} = {self.arch_kwargs[k]!r}")
        if self.pose_head != "euler" and "hpe" not in self.tasks:
            raise ValueError(f"pose_head: {self.pose_head!r} needs the hpe task")
        if (self.pose_head.startswith("heatmap") or self.visibility_head) and "fld" not in self.tasks:
            raise ValueError("pose_head heatmap and visibility_head need the fld task")
        if heads:
            self.arch_kwargs = {**self.arch_kwargs, **heads}
        return self


def preset_path(name: str) -> Path:
    p = Path(str(resources.files("pltd.trainer") / "presets" / f"{name}.yaml"))
    if not p.is_file():
        known = sorted(q.stem for q in p.parent.glob("*.yaml"))
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(known)}")
    return p


def load_config(preset: str, overrides: list[str] = ()) -> TrainConfig:
    path = preset_path(preset)
    raw = yaml.safe_load(path.read_text()) or {}
    raw["preset"] = preset
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        raw[key] = yaml.safe_load(value)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:  # blame --set for the keys it set, the preset file for the rest
        flags = {item.partition("=")[0]: item for item in overrides}
        lines = []
        for e, line in zip(exc.errors(), error_lines(exc), strict=True):
            key = str(e["loc"][0]) if e["loc"] else ""
            if key not in flags:
                lines.append(f"{path}: {line}")
                continue
            near = difflib.get_close_matches(key, list(TrainConfig.model_fields), n=1)
            hint = f" (did you mean {near[0]}?)" if near and e["type"] == "extra_forbidden" else ""
            lines.append(f"--set {flags[key]}: {line}{hint}")
        raise ValueError("; ".join(lines)) from None
