"""ONNX export of a `pltd train` network: one file per head, each with a dynamic batch axis, so
pltd's own models run through the same onnxruntime backends as the field's (`export_onnx: true`).

    OUT/model.embedding.onnx       fr task: N×3×S×S → N×D embedding (identities `onnx`, preset
                                   `pltd_embedding`)
    OUT/model.landmarks_pose.onnx  fld + hpe: → N×139, 136 landmark fractions then 3 angles in
                                   degrees (landmarks `teacher: onnx`, decoding `landmarks_pose_139`)
    OUT/model.blink.onnx           blink: → N×1 eye-closed logit (landmarks `blink: onnx`,
                                   decoding `blink_logit`)

Input: the run's input contract (`TrainConfig.input_contract`: RGB, x / 127.5 − 1, NCHW, the
defaults of `pltd/input_contract.py` that the `pltd_*` ONNX presets share).
A multitask network gives a file per head; each graph keeps only its head's branch (the exporter
drops what the output does not use). The legacy TorchScript-based exporter (`dynamo=False`) is
used: the torch.export one needs onnxscript, which nothing else here uses.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

OPSET = 17
HEADS = ("embedding", "landmarks_pose", "blink")


def heads_for(tasks: list[str]) -> list[str]:
    """The heads a network trained on these tasks has (landmarks_pose needs both fld and hpe)."""
    heads = ["embedding"] if "fr" in tasks else []
    heads += ["landmarks_pose"] if {"fld", "hpe"} <= set(tasks) else []
    return heads + (["blink"] if "blink" in tasks else [])


class Head(nn.Module):
    """One head of a TaskModel's network as a plain tensor output."""

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; heads: {', '.join(HEADS)}")
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.outputs(x)  # TaskModel.outputs: a dict whatever the network returns
        if self.head == "landmarks_pose":
            return torch.cat([out["landmarks"], out["pose"]], dim=1)
        if self.head == "blink":
            return out["blink"][:, None]
        return out["embedding"]


def export_onnx(model: nn.Module, tasks: list[str], input_size: int, out_dir: str | Path) -> list[Path]:
    """Write OUT/model.<head>.onnx for every head of `model` (a TaskModel); fp32, on the CPU, eval mode.
    The model is left as it was (device, dtype, train/eval)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device, was = next(model.parameters()).device, model.training
    cpu = model.float().to("cpu").eval()
    x = torch.zeros(2, 3, input_size, input_size)
    written = []
    try:
        for head in heads_for(tasks):
            path = out_dir / f"model.{head}.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
                torch.onnx.export(
                    Head(cpu, head), (x,), str(path), dynamo=False, opset_version=OPSET,
                    input_names=["input"], output_names=[head],
                    dynamic_axes={"input": {0: "batch"}, head: {0: "batch"}},
                )  # fmt: skip
            written.append(path)
    finally:
        model.to(device).train(was)
    return written
