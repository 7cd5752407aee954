"""L_FLD = L_wing + λ_P · L_MSE (Eqs. 3, 5) with the pose-regularisation weight λ_P (Eqs. 6–9).

λ_P: the mean 3D face L_3D (68 points, 300W-LP's frame) rotated by the ground-truth pose (R from
yaw, pitch, roll in 300W-LP's convention, `pltd.pose.rotation_torch`, Eq. 7) and projected,
L_P = (f·x' + c_x, c_y − f·y') (Eq. 8); then
λ_P = mean_i ‖L_P,i/‖L_P‖ − L_PRED,i/‖L_PRED‖‖ (Eq. 9), per sample, averaged over the batch, as
a weight (no gradient). Both point sets are centred before normalising (a choice: Eq. 9 leaves
the origin open, and centring makes λ_P independent of where the face sits in the crop).
"""

from __future__ import annotations

import torch

from pltd.pose import rotation_torch
from pltd.trainer.losses.wing import wing


def project_mean_face(mean_face: torch.Tensor, pose: torch.Tensor, f: float = 1.0, c: float = 0.0) -> torch.Tensor:
    """(68, 3) mean face, (B, 3) poses → (B, 68, 2) projections (Eqs. 6–8)."""
    rotated = mean_face.unsqueeze(0) @ rotation_torch(pose).transpose(1, 2)
    return torch.stack([f * rotated[..., 0] + c, c - f * rotated[..., 1]], dim=-1)


def _unit(points: torch.Tensor) -> torch.Tensor:
    centred = points - points.mean(dim=1, keepdim=True)
    return centred / centred.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)


def lambda_p(pred: torch.Tensor, pose: torch.Tensor, mean_face: torch.Tensor) -> torch.Tensor:
    """Eq. 9 per batch: mean distance between the normalised projection and prediction (B, 68, 2)."""
    with torch.no_grad():
        lp = _unit(project_mean_face(mean_face.to(pred), pose.to(pred)))
        return (lp - _unit(pred.detach())).norm(dim=-1).mean()


def fld_loss(pred: torch.Tensor, target: torch.Tensor, pose: torch.Tensor, mean_face: torch.Tensor,
             mode: str | float = "dynamic") -> dict[str, torch.Tensor]:  # fmt: skip
    """L_FLD (Eq. 3) on (B, 68, 2) points in fractions of the input side (the trainer's units, Table 10);
    mode: "dynamic" (λ_P of Eq. 9, scale-free) or a number."""
    lam = lambda_p(pred, pose, mean_face) if mode == "dynamic" else torch.tensor(float(mode), device=pred.device)
    l_wing = wing(pred, target)
    l_mse = ((pred - target) ** 2).sum(dim=-1).mean()  # Eq. 5: squared point distance, mean over points
    return {"fld": l_wing + lam * l_mse, "wing": l_wing, "mse": l_mse, "lambda_p": lam}
