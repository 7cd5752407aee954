"""Networks and losses of the trainer: counts, gradients, and each equation at known points."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pltd.networks import create
from pltd.trainer.config import load_config
from pltd.trainer.losses.landmark import fld_loss, lambda_p, project_mean_face
from pltd.trainer.losses.margin import LPMC, cosface, pose_ratio
from pltd.trainer.losses.wing import wing
from pltd.trainer.model import TaskModel, load_mean_face
from tests.helpers import train_batch as batch


def n_params(m) -> float:
    return sum(p.numel() for p in m.parameters()) / 1e6


def test_parameter_counts_match_insightface_and_the_paper():
    assert n_params(create("iresnet50")) == pytest.approx(43.6, abs=0.05)  # insightface IResNet50, 512-d
    assert n_params(create("iresnet50_multi")) == pytest.approx(73.3, abs=0.05)  # the paper's MTL model
    out = create("iresnet_multi_tiny")(torch.zeros(2, 3, 112, 112))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"embedding": (2, 32), "landmarks": (2, 136), "pose": (2, 3)}


@pytest.mark.parametrize(
    ("preset", "over"),
    [("mtl", ["arch=iresnet_multi_tiny"]), ("teacher-300wlp", ["arch=resnet_tiny", "input_size=128"])],
)
def test_every_parameter_receives_a_gradient(preset, over):
    torch.manual_seed(0)
    cfg = load_config(preset, over)
    model = TaskModel(cfg, n_classes=3)
    losses = model(batch(size=cfg.input_size))
    losses["loss"].backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, missing
    assert set(losses) >= ({"fr", "fld", "hpe", "loss"} if preset == "mtl" else {"fld", "hpe", "loss"})


def test_lpmc_with_m2_zero_is_cosface_and_margin_grows_with_pose():
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 16), torch.arange(8) % 4
    pose = torch.tensor([[10.0, 20.0, 30.0]] * 8)
    lp = LPMC(16, 4, s=64, m1=0.35, m2=0.0)
    cf = cosface(16, 4, s=64, m=0.35)
    cf.weight.data.copy_(lp.weight.data)
    assert torch.allclose(lp(emb, labels, pose), cf(emb, labels))
    cos = F.linear(F.normalize(emb), F.normalize(lp.weight))
    manual = F.cross_entropy(64 * (cos - 0.35 * F.one_hot(labels, 4)), labels)
    assert torch.allclose(cf(emb, labels), manual)
    posed = LPMC(16, 4, m1=0.35, m2=0.7)
    posed.weight.data.copy_(lp.weight.data)
    assert posed(emb, labels, pose) > cf(emb, labels)  # γ_P = 60/180 adds 0.233 to the margin
    assert pose_ratio(torch.tensor([[200.0, 0.0, 0.0]])).item() == 1.0


def test_partial_fc_keeps_every_positive_class():
    torch.manual_seed(0)
    head = LPMC(16, 1000, sample_rate=0.1)
    labels = torch.tensor([3, 997, 500, 3])
    centres, target = head._centres(labels)
    assert centres.shape[0] == 100 and torch.equal(centres[target], head.weight[labels])
    assert head(torch.randn(4, 16), labels).isfinite()


def test_wing_at_known_points():
    c = 10 - 10 * math.log(1 + 10 / 2)
    assert wing(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(10 * math.log(1.5))
    assert wing(torch.tensor([20.0]), torch.tensor([0.0])).item() == pytest.approx(20 - c)
    assert wing(torch.tensor([10.0]), torch.tensor([0.0])).item() == pytest.approx(10 - c)  # continuous at w


def test_lambda_p_is_zero_when_the_prediction_is_the_projection():
    face = load_mean_face(None)
    pose = torch.tensor([[20.0, -10.0, 5.0], [-40.0, 15.0, 0.0]])
    proj = project_mean_face(face, pose)
    assert lambda_p(proj * 37.0 + 5.0, pose, face).item() == pytest.approx(0.0, abs=1e-6)  # any scale, any shift
    assert lambda_p(project_mean_face(face, -pose), pose, face).item() > 0.02  # a different pose is not free
    parts = fld_loss(proj, proj, pose, face, mode=1)
    assert parts["fld"].item() == 0.0 and parts["lambda_p"].item() == 1.0
