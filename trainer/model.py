"""A network and the losses of its tasks; `forward(batch)` returns a dict of losses (Eq. 1).

    L_total = L_FR + λ1 · L_FLD + λ2 · L_HPE        (λ1 = 100, λ2 = 10)

A network returns a dict (`embedding`, `landmarks`, `pose`) or a plain tensor that the tasks
split: 139 outputs → 136 landmark fractions + 3 angles (the teacher); 1 output → blink logit.

Units: landmarks in fractions of the input side (Wing, MSE and λ_P alike), pose in degrees. With
them L_total's weights reproduce the paper's loss convergence ratios (Table 10): at a 1-pixel error
per coordinate at 112 px, 2° of pose and L_FR = 10, L_FR : 100·L_FLD : 10·L_HPE ≈ 0.29 : 0.13 : 0.58
against the paper's 0.31 : 0.15 : 0.54 (`tests/trainer/test_loss_balance.py`); in input pixels the
landmark term would be ≈ 93 % of the total.

Options from related systems (off by default, so that the losses are exactly the paper's):
`loss_weighting: uncertainty` replaces the fixed weights by learned log-variances (`losses/weighting.py`; the loss
dict then carries `weight_*` and `log_var_*`); `pose_head: 6d | heatmap_6d` trains the pose branch
with the geodesic loss (`losses/rotation.py`; `hpe` is then the mean geodesic angle in degrees and
`hpe_mae` the mean absolute error of the angles read back, for comparison); `visibility_head` adds
`vis`, a BCE against the self-occlusion of the label's pose (`stages/landmarks/visibility.py`), or
against the batch's `visible` when the reader provides it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pltd.networks import create, split_landmarks_pose
from pltd.pose import rotation_torch
from pltd.schemas import LANDMARKS_POSE
from pltd.trainer.config import TrainConfig
from pltd.trainer.losses.landmark import fld_loss
from pltd.trainer.losses.margin import LPMC
from pltd.trainer.losses.pose import hpe_loss
from pltd.trainer.losses.rotation import geodesic_loss
from pltd.trainer.losses.weighting import UncertaintyWeighting


def load_mean_face(path: str | None) -> torch.Tensor:
    from pltd.stages.landmarks.mean_face import load_mean_face as load

    return torch.from_numpy(np.asarray(load(path), np.float32))


class TaskModel(nn.Module):
    def __init__(self, cfg: TrainConfig, n_classes: int = 0):
        super().__init__()
        self.cfg = cfg
        self.net = create(cfg.arch, **cfg.arch_kwargs)
        if "fr" in cfg.tasks:
            if n_classes < 2:
                raise ValueError(f"face recognition needs at least 2 identities, the data has {n_classes}")
            with torch.no_grad():
                self.net.eval()
                dim = self.outputs(torch.zeros(2, 3, cfg.input_size, cfg.input_size))["embedding"].shape[1]
                self.net.train()
            self.margin = LPMC(dim, n_classes, cfg.s, cfg.m1, cfg.m2, cfg.partial_fc)
        self.register_buffer("mean_face", load_mean_face(cfg.mean_face), persistent=False)
        if cfg.visibility_head:
            from pltd.stages.landmarks.visibility import mean_face_normals

            normals = torch.from_numpy(mean_face_normals(cfg.mean_face).astype(np.float32))
            self.register_buffer("normals", normals, persistent=False)
        self.weighting = None
        if cfg.loss_weighting == "uncertainty":
            tasks = list(cfg.tasks) + (["vis"] if cfg.visibility_head else [])
            fixed = {"fld": cfg.lambda1, "hpe": cfg.lambda2, "vis": cfg.lambda_vis, "fr": 1.0, "blink": 1.0}
            self.weighting = UncertaintyWeighting(tasks, fixed if cfg.uncertainty_init == "lambdas" else None)

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        if isinstance(out, dict):
            return out
        if out.shape[1] == LANDMARKS_POSE:
            return split_landmarks_pose(out)
        if out.shape[1] == 1:
            return {"blink": out[:, 0]}
        return {"embedding": out}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.losses(self.outputs(batch["image"]), batch)

    def losses(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss terms and `loss` = L_total (Eq. 1) of the network's outputs against the batch's labels."""
        cfg = self.cfg
        losses: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=next(iter(out.values())).device)
        if "fr" in cfg.tasks:
            pose = batch["pose"] if cfg.m2 else None
            losses["fr"] = self.margin(out["embedding"], batch["face_id"], pose)
            total = total + losses["fr"]
        if "fld" in cfg.tasks:
            # fractions of the input side, as network and reader give them: the units in which Eq. 1's
            # λ1 = 100 reproduces the paper's loss convergence ratios (Table 10; docs/training.md)
            pred = out["landmarks"].float().view(-1, 68, 2)
            mode = "dynamic" if cfg.lambda_p == "dynamic" else float(cfg.lambda_p)
            parts = fld_loss(pred, batch["landmarks"].float(), batch["pose"].float(), self.mean_face, mode)
            losses |= parts
            total = total + cfg.lambda1 * parts["fld"]
        if "hpe" in cfg.tasks:
            if "rotation" in out:  # 6D head: geodesic loss; the angles read back are logged
                losses["hpe"] = geodesic_loss(out["rotation"], batch["pose"])
                losses["hpe_mae"] = hpe_loss(out["pose"].detach().float(), batch["pose"].float())
            else:
                losses["hpe"] = hpe_loss(out["pose"].float(), batch["pose"].float())
            total = total + cfg.lambda2 * losses["hpe"]
        if "blink" in cfg.tasks:
            losses["blink"] = F.binary_cross_entropy_with_logits(out["blink"].float(), batch["eye_closed"].float())
            total = total + losses["blink"]
        if "visibility" in out:
            losses["vis"] = F.binary_cross_entropy_with_logits(out["visibility"].float(), self.visibility_target(batch))
            total = total + cfg.lambda_vis * losses["vis"]
        if self.weighting is not None:
            total, log = self.weighting(losses)
            losses |= log
        losses["loss"] = total
        return losses

    def visibility_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The reader's `visible` where given (NaN: a null row), else the self-occlusion of the label's pose."""
        from pltd.stages.landmarks.visibility import visible_from_normals

        computed = visible_from_normals(rotation_torch(batch["pose"].float()), self.normals).float()
        if "visible" not in batch:
            return computed
        given = batch["visible"].float()
        return torch.where(torch.isnan(given), computed, given)
