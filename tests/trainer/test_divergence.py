"""Divergence stops training: an injected NaN or explosion ends a real run with a message
naming the step and the term, and the checkpoint left is the last good one.

Consistency tests (pltd vs pltd): the injection wraps the real `TaskModel.losses` and spoils the real
network's output at one step; everything else (network, loss, SGD, checkpoint writer) runs as it does.
"""

from __future__ import annotations

import math

import pytest
import torch

from pltd.trainer.config import load_config
from pltd.trainer.guard import Diverged, DivergenceGuard
from pltd.trainer.loop import train
from pltd.trainer.model import TaskModel
from tests.trainer.test_training import TINY


def _spoil(monkeypatch, at_call: int, output: str, factor: float) -> None:
    """Multiply the network's `output` by `factor` in the `at_call`-th loss computation of the run."""
    real, calls = TaskModel.losses, [0]

    def losses(self, out, batch):
        calls[0] += 1
        if calls[0] == at_call:
            out = {**out, output: out[output] * factor}
        return real(self, out, batch)

    monkeypatch.setattr(TaskModel, "losses", losses)


def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(pltd, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _spoil(monkeypatch, at_call=5, output="landmarks", factor=math.nan)
    cfg = load_config("mtl", [*TINY, "checkpoint_every=2"])
    with pytest.raises(Diverged) as exc:
        train(cfg, str(pltd), str(out), max_steps=20)
    msg = str(exc.value)
    assert msg.startswith("step 5: the loss term fld is nan")
    assert f"kept the last good checkpoint {out / 'checkpoint.pt'} (step 4)" in msg
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (out / "model.pt").exists()  # no inference export of a diverged run
    with open(out / "log_rank0.csv") as f:
        assert len(f.read().splitlines()) == 1 + 4  # header + the four good steps; step 5 is not logged


def test_an_exploding_loss_names_the_term_that_rose(pltd, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _spoil(monkeypatch, at_call=25, output="pose", factor=1e5)  # after the guard's 20-step warm-up
    with pytest.raises(Diverged, match=r"^step 25: the loss exploded: .* the term that rose most: hpe "):
        train(load_config("mtl", TINY), str(pltd), str(out), max_steps=30)


def test_the_guard_reports_the_first_bad_step_not_the_last():
    """Without a check every step (GPUs), a later check still names the first bad step and term."""
    guard = DivergenceGuard(factor=100, warmup=3)
    for step in range(1, 8):
        pose = math.inf if step >= 5 else 2.0
        guard.observe(step, {"fr": torch.tensor(10.0), "hpe": torch.tensor(pose), "loss": torch.tensor(10 + pose)})
    with pytest.raises(Diverged, match=r"^step 5: the loss term hpe is inf \(also loss inf\)"):
        guard.check()


def test_a_noisy_but_sane_loss_does_not_stop_training():
    """A 30× jump (a bad batch) is not divergence at the default factor 100; 200× is."""
    guard = DivergenceGuard()
    for step in range(1, 60):
        guard.observe(step, {"loss": torch.tensor(300.0 if step == 40 else 10.0)})
    guard.check()
    guard.observe(60, {"loss": torch.tensor(2000.0)})
    with pytest.raises(Diverged, match="^step 60: the loss exploded: loss 2000"):
        guard.check()


def test_pltd_train_exits_3_with_the_message(pltd, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pltd.pipeline.cli import app

    _spoil(monkeypatch, at_call=3, output="pose", factor=math.inf)
    sets = [a for s in [*TINY, "checkpoint_every=2"] for a in ("--set", s)]
    args = ["train", "--preset", "mtl", "--data", str(pltd), "--out", str(tmp_path / "run"), "--max-steps", "6"]
    res = CliRunner().invoke(app, [*args, *sets])
    assert res.exit_code == 3
    assert "training diverged: step 3: the loss term hpe is inf" in " ".join(res.output.split())
