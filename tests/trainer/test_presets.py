"""Every preset loads, and its network is built for its input size (consistency tests, pltd vs pltd)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from pltd.trainer.config import load_config
from pltd.trainer.model import TaskModel
from tests.helpers import train_batch

PRESETS = sorted(p.stem for p in Path(str(resources.files("pltd.trainer") / "presets")).glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_an_iresnet_preset_builds_its_network_for_its_input_size(name):
    """IResNet's fc layers are sized by `arch_kwargs.input_size` (default 112); the reader crops to
    `input_size`: the two must agree or the first batch fails (as it did for a 64-px preset)."""
    cfg = load_config(name)
    if cfg.arch.startswith("iresnet"):
        assert cfg.arch_kwargs.get("input_size", 112) == cfg.input_size


def test_the_first_run_preset_trains_the_paper_losses_at_64_px():
    cfg = load_config("mtl-tiny")
    assert (cfg.tasks, cfg.lambda1, cfg.lambda2, cfg.lambda_p) == (["fr", "fld", "hpe"], 100, 10, "dynamic")
    model = TaskModel(cfg, n_classes=40)
    losses = model(train_batch(n=4, classes=40, size=64))
    assert set(losses) == {"fr", "fld", "wing", "mse", "lambda_p", "hpe", "loss"}
    total = losses["fr"] + 100 * losses["fld"] + 10 * losses["hpe"]
    assert losses["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
