"""Optional heads of IResNet-Multi, from related systems: a 6D rotation output (Zhou et al. 2019,
as 6DRepNet and LPONet use it) and a landmark-guided pose input (ATPN's "cheap heatmap").

- `rotation_from_6d`: 6 numbers = the first two columns of R, made orthonormal by Gram–Schmidt:
  x = a1/‖a1‖, z = (x × a2)/‖x × a2‖, y = z × x, R = [x y z] (columns). This is the construction of
  6DRepNet's `compute_rotation_matrix_from_ortho6d` (thohemp/6DRepNet, `sixdrepnet/utils.py`,
  commit 445cf727e302e5785f961206869fc07953420f89); `tests/conformance/test_rotation_6d.py` checks it.
- `render_heatmap`: one channel, the sum of isotropic Gaussians centred on the predicted landmarks,
  differentiable in the landmarks (no extra labels).
- `HeatmapGuide`: the heatmap concatenated with low-level features (IResNet stage 2) and brought by a
  strided 3×3 convolution to the shape of the shared features that the pose branch reads.

Hand-written (a few lines each): torchvision/kornia are not dependencies of the ground package, and
the formulas are short enough to read against their sources.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pltd.pose import angles_torch


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(B, 6) → (B, 3, 3) rotations (orthonormal, det +1); columns x, y, z as in 6DRepNet."""
    a1, a2 = x[:, 0:3].float(), x[:, 3:6].float()
    bx = F.normalize(a1, dim=1, eps=1e-8)
    bz = F.normalize(torch.linalg.cross(bx, a2, dim=1), dim=1, eps=1e-8)
    by = torch.linalg.cross(bz, bx, dim=1)
    return torch.stack([bx, by, bz], dim=2)


def rotation_to_6d(r: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) → (B, 6): the first two columns, the inverse of `rotation_from_6d` on rotations."""
    return torch.cat([r[:, :, 0], r[:, :, 1]], dim=1)


def render_heatmap(points: torch.Tensor, size: int, sigma: float = 1.0) -> torch.Tensor:
    """(B, K, 2) landmarks as fractions of the input side → (B, 1, size, size) heatmap.

    Pixel (i, j) has its centre at ((j + 0.5)/size, (i + 0.5)/size) of the input; σ in heatmap pixels.
    """
    grid = (torch.arange(size, device=points.device, dtype=points.dtype) + 0.5) / size
    dx = (grid.view(1, 1, 1, size) - points[..., 0, None, None]) * size  # (B, K, 1, size)
    dy = (grid.view(1, 1, size, 1) - points[..., 1, None, None]) * size  # (B, K, size, 1)
    g = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))  # (B, K, size, size)
    return g.sum(dim=1, keepdim=True)


class HeatmapGuide(nn.Module):
    """cat(low-level features, heatmap) → strided conv, BN, PReLU: added to the pose branch's input."""

    def __init__(self, low_channels: int, out_channels: int, sigma: float = 1.0):
        super().__init__()
        self.sigma = sigma
        self.conv = nn.Conv2d(low_channels + 1, out_channels, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-05)
        self.prelu = nn.PReLU(out_channels)

    def forward(self, low: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        heat = render_heatmap(landmarks.float().view(len(landmarks), -1, 2), low.shape[-1], self.sigma)
        return self.prelu(self.bn(self.conv(torch.cat([low, heat.to(low.dtype)], dim=1))))


def pose_outputs(raw: torch.Tensor, six_d: bool) -> dict[str, torch.Tensor]:
    """The pose head's outputs: Euler angles as before, or R from 6D with the angles read back."""
    if not six_d:
        return {"pose": raw}
    r = rotation_from_6d(raw)
    return {"pose": angles_torch(r), "rotation": r}
