"""Checkpoint files the trainer writes and the pipeline's backends read.

A checkpoint is a dict saved with `torch.save`: ``{"format": "pltd-checkpoint-1", "arch": NAME,
"arch_kwargs": {...}, "task": ..., "input": {...}, "state_dict": {...}, "meta": {...}}``, `input`
being the network's input contract (`pltd/input_contract.py`). Loading uses ``weights_only=True``, so
a file cannot run code. `load_model` returns the checkpoint with `input` read back as an
`InputContract`; a file written before checkpoints recorded it has an `input_size` instead, and gets
the contract the trainer fed then (`unrecorded`: RGB, x / 127.5 − 1, NCHW at that size).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import ValidationError

from pltd.input_contract import InputContract, unrecorded
from pltd.validation import error_lines

FORMAT = "pltd-checkpoint-1"


class CheckpointError(FileNotFoundError):
    """A checkpoint that is missing or not ours; the message names the file."""


def save_checkpoint(
    path: str | Path, model: torch.nn.Module, arch: str, task: str, contract: InputContract | int, **meta
) -> None:
    """`contract`: what the network was trained on; an int is pltd's training contract at that side."""
    if isinstance(contract, int):
        contract = InputContract(input_size=contract)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "arch": arch,
            "arch_kwargs": meta.pop("arch_kwargs", {}),
            "task": task,
            "input": contract.record(),
            "state_dict": model.state_dict(),
            "meta": meta,
        },
        path,
    )


def load_model(path: str | Path | None, task: str, role: str) -> tuple[torch.nn.Module, dict]:
    """Build the network a checkpoint describes and load its weights; clear errors otherwise. The
    checkpoint comes back too, its `input` an `InputContract` (what every consumer feeds the network)."""
    from pltd.networks import create

    if not path:
        raise CheckpointError(f"{role}: no checkpoint configured (set it in the manifest)")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{role}: checkpoint file {p} not found (train it with `pltd train`, or fix the path)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or unsafe files
        raise CheckpointError(f"{role}: {p} is not a loadable checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{role}: {p} is not a pltd checkpoint (expected format {FORMAT})")
    if ckpt.get("task") != task:
        raise CheckpointError(f"{role}: {p} was trained for task {ckpt.get('task')!r}, expected {task!r}")
    ckpt["input"] = contract_of(ckpt, f"{role}: {p}")
    model = create(ckpt["arch"], **ckpt.get("arch_kwargs", {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # torch names the missing, unexpected and wrongly shaped tensors
        raise CheckpointError(f"{role}: {p}: its weights do not fit its architecture {ckpt['arch']!r}: {exc}") from None
    return model.eval(), ckpt


def contract_of(ckpt: dict, where: str = "checkpoint") -> InputContract:
    """The input contract a checkpoint records; `unrecorded` for files written before it was recorded."""
    if ckpt.get("input") is None:
        return unrecorded(int(ckpt["input_size"]))
    try:
        return InputContract.model_validate(ckpt["input"])
    except ValidationError as exc:
        raise CheckpointError(f"{where}: its input contract is invalid: {'; '.join(error_lines(exc))}") from None
