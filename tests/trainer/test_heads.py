"""IResNet-Multi's optional heads in the trainer.

Consistency tests (pltd vs pltd): with every option off the network and the losses are the paper's
(golden outputs recorded before the options existed, and option-off configs equal to the default);
the heatmap-guided pose branch trains the landmark head from both tasks; the 6D head's losses,
outputs and exported checkpoint; the visibility head's targets. Conformance: the heatmap's value
and gradient against the Gaussian's formula. Random-weight networks: plumbing only.
"""

from __future__ import annotations

import math

import pytest
import torch

from pltd.checkpoints import load_model, save_checkpoint
from pltd.networks import create
from pltd.networks.heads import render_heatmap
from pltd.pose import geodesic_deg
from pltd.stages.landmarks.visibility import self_occlusion
from pltd.trainer.config import load_config
from pltd.trainer.model import TaskModel


def batch(n=4, classes=3, size=112, pose=None):
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
        "landmarks": torch.rand(n, 68, 2, generator=g),
        "pose": torch.rand(n, 3, generator=g) * 60 - 30 if pose is None else pose,
        "face_id": torch.arange(n) % classes,
    }


def model(*over: str) -> TaskModel:
    torch.manual_seed(0)
    return TaskModel(load_config("mtl", ["arch=iresnet_multi_tiny", "lambda_p=1", *over]), n_classes=3)


def test_with_the_options_off_the_network_and_losses_are_unchanged():
    """Golden values: seed 0, iresnet_multi_tiny, recorded at commit e188a05 before the options."""
    m = model()
    assert sum(p.numel() for p in m.parameters()) == 730371
    off = model("pose_head=euler", "visibility_head=false", "loss_weighting=fixed")
    assert off.cfg.arch_kwargs == {} and m.cfg.arch_kwargs == {}
    sd, sd_off = m.state_dict(), off.state_dict()
    assert list(sd) == list(sd_off) and all(torch.equal(sd[k], sd_off[k]) for k in sd)
    b = batch()
    with torch.no_grad():
        out = m.outputs(b["image"])
        losses = m(b)
    assert set(out) == {"embedding", "landmarks", "pose"}
    assert out["embedding"].abs().sum().item() == pytest.approx(110.342735, rel=1e-5)
    assert out["landmarks"].sum().item() == pytest.approx(3.186473, rel=1e-4)
    assert out["landmarks"].abs().sum().item() == pytest.approx(243.996864, rel=1e-5)
    assert out["pose"].abs().sum().item() == pytest.approx(5.407700, rel=1e-5)
    assert losses["fr"].item() == pytest.approx(27.666955, rel=1e-5)
    assert losses["hpe"].item() == pytest.approx(9.460143, rel=1e-5)
    assert set(losses) == {"fr", "fld", "wing", "mse", "lambda_p", "hpe", "loss"}
    total = losses["fr"] + 100 * losses["fld"] + 10 * losses["hpe"]
    assert losses["loss"].item() == pytest.approx(total.item(), rel=1e-6)


def test_heatmap_value_and_gradient_follow_the_gaussian():
    """H(i, j) = Σ_k exp(−((u_j − x_k)² + (v_i − y_k)²)·S²/(2σ²)), u_j = (j + ½)/S; ∂H/∂x_k = H_k·(u_j − x_k)·S²/σ²."""
    s, sigma = 28, 1.0
    pt = torch.tensor([[[10.5 / s, 7.5 / s]]], requires_grad=True)  # at the centre of pixel (row 7, col 10)
    h = render_heatmap(pt, s, sigma)
    assert h.shape == (1, 1, s, s) and h[0, 0, 7, 10].item() == pytest.approx(1.0)
    assert h[0, 0, 7, 11].item() == pytest.approx(math.exp(-0.5))
    assert h[0, 0, 8, 11].item() == pytest.approx(math.exp(-1.0))
    h[0, 0, 7, 11].backward()
    assert pt.grad[0, 0].tolist() == pytest.approx([math.exp(-0.5) * (1 / s) * s**2 / sigma**2, 0.0], abs=1e-4)


def test_the_heatmap_head_gets_gradients_from_both_tasks():
    m = model("pose_head=heatmap")
    net = m.net
    assert m.cfg.arch_kwargs == {"pose_head": "heatmap"}
    b = batch()
    grads = {}
    for task in ("fld", "hpe"):
        m.zero_grad(set_to_none=True)
        m(b)[task].backward()
        grads[task] = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    # the landmark head renders the heatmap: trained by its own loss and, through the heatmap, by the pose loss
    for task in ("fld", "hpe"):
        assert grads[task]["head_fld.fc.weight"].abs().sum() > 0, task
    # the fusion (heatmap + stage-2 features) serves the pose branch only
    assert grads["hpe"]["guide.conv.weight"].abs().sum() > 0
    assert "guide.conv.weight" not in grads["fld"]
    # and without the heatmap, the pose loss does not reach the landmark head
    plain = model()
    plain(b)["hpe"].backward()
    assert plain.net.head_fld.fc.weight.grad is None


def test_6d_head_trains_with_the_geodesic_loss_and_reads_angles_back(tmp_path):
    m = model("pose_head=6d")
    b = batch()
    out = m.outputs(b["image"])
    r = out["rotation"]
    assert r.shape == (4, 3, 3) and torch.allclose(r.transpose(1, 2) @ r, torch.eye(3).expand(4, 3, 3), atol=1e-5)
    losses = m(b)
    from pltd.pose import rotation

    want = [geodesic_deg(r[i].detach().double().numpy(), rotation(*b["pose"][i].tolist())) for i in range(4)]
    assert losses["hpe"].item() == pytest.approx(sum(want) / 4, abs=1e-3)
    assert losses["hpe_mae"].item() == pytest.approx((out["pose"] - b["pose"]).abs().mean().item(), rel=1e-5)
    assert losses["loss"].item() == pytest.approx(
        (losses["fr"] + 100 * losses["fld"] + 10 * losses["hpe"]).item(), rel=1e-6
    )
    losses["loss"].backward()
    assert m.net.head_hpe.fc.weight.grad.abs().sum() > 0 and m.net.head_hpe.fc.weight.shape[0] == 6
    # the exported checkpoint rebuilds the same network (the head is an arch kwarg)
    save_checkpoint(tmp_path / "m.pt", m.net, m.cfg.arch, "multitask", 112, arch_kwargs=m.cfg.arch_kwargs)
    net, _ = load_model(tmp_path / "m.pt", "multitask", "test")
    m.net.eval()
    with torch.no_grad():
        assert torch.allclose(net(b["image"])["pose"], m.net(b["image"])["pose"], atol=1e-5)


def test_visibility_head_targets_are_the_self_occlusion_of_the_label_pose():
    pose = torch.tensor([[60.0, 0, 0], [-60.0, 0, 0], [0.0, 0, 0], [20.0, -10, 5]])
    m = model("visibility_head=true")
    b = batch(pose=pose)
    target = m.visibility_target(b)
    assert torch.equal(target.bool(), torch.from_numpy(self_occlusion(pose.numpy())))
    assert not target[0, :5].any() and target[2].all()
    losses = m(b)
    assert losses["loss"].item() == pytest.approx(
        (losses["fr"] + 100 * losses["fld"] + 10 * losses["hpe"] + losses["vis"]).item(), rel=1e-6
    )
    losses["loss"].backward()
    assert m.net.head_vis.fc.weight.grad.abs().sum() > 0
    given = torch.zeros(4, 68)
    assert torch.equal(m.visibility_target(b | {"visible": given}), given)  # the reader's column wins


def test_every_head_together_with_uncertainty_weighting():
    m = model("pose_head=heatmap_6d", "visibility_head=true", "loss_weighting=uncertainty")
    losses = m(batch())
    assert {"weight_vis", "weight_hpe", "hpe_mae", "vis"} <= set(losses)
    losses["loss"].backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (["pose_head=6d", "tasks=[fr]"], "needs the hpe task"),
        (["visibility_head=true", "tasks=[fr, hpe]"], "need the fld task"),
        (["pose_head=6d", "arch_kwargs={pose_head: heatmap}"], "disagrees with arch_kwargs"),
        (["pose_head=quaternion"], "pose_head"),
    ],
)
def test_bad_head_settings_name_the_field(over, message):
    with pytest.raises(ValueError, match=message):
        load_config("mtl", over)


def test_unknown_pose_head_in_the_network():
    with pytest.raises(ValueError, match="pose_head 'quat'"):
        create("iresnet_multi_tiny", pose_head="quat")


def test_the_config_accepts_exactly_the_networks_pose_heads():
    """Consistency: `pose_head` is checked against the network's `POSE_HEADS` (one list): each one
    configures and builds; an unknown one is refused naming them."""
    from pltd.networks.iresnet import POSE_HEADS

    for head in POSE_HEADS:
        assert model(f"pose_head={head}").net.six_d == head.endswith("6d")
    with pytest.raises(ValueError, match=f"expected one of {', '.join(POSE_HEADS)}"):
        load_config("mtl", ["pose_head=quat"])
