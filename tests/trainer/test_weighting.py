"""Uncertainty task weighting (Kendall et al. 2018; MOS Eq. 7): conformance tests against the
formula L = Σ c_i·exp(−s_i)·L_i + ½·s_i (c = ½ regression, 1 classification), with the numbers
worked out by hand in the comments; and the trainer's use of it (consistency)."""

from __future__ import annotations

import math

import pytest
import torch

from pltd.trainer.config import load_config
from pltd.trainer.losses.weighting import UncertaintyWeighting
from pltd.trainer.model import TaskModel

LOSSES = {"fr": torch.tensor(2.0), "fld": torch.tensor(3.0), "hpe": torch.tensor(5.0)}


def test_at_s_zero_the_total_is_the_sum_with_the_half_on_regression_tasks():
    w = UncertaintyWeighting(["fr", "fld", "hpe"])
    total, log = w(LOSSES)
    assert total.item() == pytest.approx(2.0 + 0.5 * 3.0 + 0.5 * 5.0)  # = 6.0
    assert [log[f"weight_{t}"].item() for t in ("fr", "fld", "hpe")] == [1.0, 0.5, 0.5]
    only_classification = UncertaintyWeighting(["fr", "blink"])
    total, _ = only_classification({"fr": torch.tensor(2.0), "blink": torch.tensor(0.7)})
    assert total.item() == pytest.approx(2.7)  # the plain unweighted sum


def test_gradient_on_s_matches_the_formula():
    """∂L/∂s_i = −c_i·exp(−s_i)·L_i + ½, at s = (0.3, −0.2, 0.1):
    fr: −1·e^−0.3·2 + 0.5 = −0.981636;  fld: −0.5·e^0.2·3 + 0.5 = −1.332104;  hpe: −0.5·e^−0.1·5 + 0.5 = −1.762094."""
    w = UncertaintyWeighting(["fr", "fld", "hpe"])
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([0.3, -0.2, 0.1]))
    total, _ = w(LOSSES)
    total.backward()
    assert w.log_var.grad.tolist() == pytest.approx([-0.981636, -1.332104, -1.762094], abs=1e-6)
    # and the value: Σ c·e^−s·L + ½ s = 1.481636 + 1.832104 + 2.262094 + 0.5·(0.3 − 0.2 + 0.1)
    assert total.item() == pytest.approx(1.481636 + 1.832104 + 2.262094 + 0.1, abs=1e-5)


def test_the_optimum_of_s_weights_every_task_by_one_over_twice_its_loss():
    """Setting the derivative to zero: exp(−s*) = 1/(2·c·L), so the weight c·exp(−s*) = 1/(2L)."""
    w = UncertaintyWeighting(["fr", "fld", "hpe"])
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([math.log(2 * 1.0 * 2.0), math.log(2 * 0.5 * 3.0), math.log(2 * 0.5 * 5.0)]))
    total, log = w(LOSSES)
    total.backward()
    assert w.log_var.grad.abs().max().item() < 1e-6
    assert [log[f"weight_{t}"].item() for t in ("fr", "fld", "hpe")] == pytest.approx([1 / 4, 1 / 6, 1 / 10])


def test_lambdas_init_starts_at_the_papers_weights():
    w = UncertaintyWeighting(["fr", "fld", "hpe"], {"fr": 1.0, "fld": 100.0, "hpe": 10.0})
    assert w.weights().tolist() == pytest.approx([1.0, 100.0, 10.0])
    assert w.log_var.tolist() == pytest.approx([0.0, math.log(0.5 / 100), math.log(0.5 / 10)])


def test_the_trainer_logs_the_learned_weights_and_trains_s():
    torch.manual_seed(0)
    cfg = load_config("mtl", ["arch=iresnet_multi_tiny", "loss_weighting=uncertainty"])
    model = TaskModel(cfg, n_classes=3)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(4, 3, 112, 112, generator=g) * 2 - 1, "landmarks": torch.rand(4, 68, 2, generator=g),
             "pose": torch.rand(4, 3, generator=g) * 60 - 30, "face_id": torch.arange(4) % 3}  # fmt: skip
    losses = model(batch)
    assert losses["loss"].item() == pytest.approx(
        (losses["fr"] + 0.5 * losses["fld"] + 0.5 * losses["hpe"]).item(), rel=1e-6
    )
    assert {"weight_fr", "weight_fld", "weight_hpe", "log_var_fr", "log_var_fld", "log_var_hpe"} <= set(losses)
    losses["loss"].backward()
    expected = [0.5 - c * losses[t].item() for t, c in (("fr", 1.0), ("fld", 0.5), ("hpe", 0.5))]
    assert model.weighting.log_var.grad.tolist() == pytest.approx(expected, rel=1e-5)
