"""LPMC, the large pose margin cosine loss (Eq. 10), and CosFace (its m2 = 0 case).

    L = −log( e^{s(cos θ_y − m_p)} / (e^{s(cos θ_y − m_p)} + Σ_{j≠y} e^{s cos θ_j}) ),
    m_p = m1 + m2 · γ_P,   γ_P = clip((|yaw| + |pitch| + |roll|) / 180, 0, 1)

Two readings here are interpretations, not the letter of the paper. (1) Eq. 10 as printed has
cos(θ_y − m_p): taken literally that is an angular margin with the wrong sign (a positive m_p makes
the target logit larger, an easier target; ArcFace's margin is cos(θ + m)). The text calls the loss
a large-margin cosine loss built on CosFace and says a larger pose gives a larger margin, so pltd
uses CosFace's additive cosine margin cos θ_y − m_p, which with m2 = 0 is CosFace exactly. (2) The
form of the pose ratio γ_P — the sum of |yaw|, |pitch|, |roll| in degrees over 180, clipped to
[0, 1] (m_p reaches m1 + m2 = 1.0 at a total of 180°) — is pltd's reading, not a printed formula.

Usage: `loss = LPMC(512, n_classes)(embeddings, labels, pose_degrees)`. With `sample_rate < 1`
the class centres are sampled as Partial FC does (An et al. 2022): every positive class of the
batch plus random negatives up to `sample_rate` of all classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def pose_ratio(pose: torch.Tensor) -> torch.Tensor:
    """γ_P of Eq. 10 from (yaw, pitch, roll) in degrees."""
    return (pose.abs().sum(dim=1) / 180.0).clamp(0.0, 1.0)


class LPMC(nn.Module):
    def __init__(self, dim: int, n_classes: int, s: float = 64.0, m1: float = 0.3, m2: float = 0.7,
                 sample_rate: float = 1.0):  # fmt: skip
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim).normal_(0, 0.01))
        self.s, self.m1, self.m2, self.sample_rate = s, m1, m2, sample_rate

    def _centres(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class centres to score against and the labels re-indexed into them (Partial FC)."""
        n = self.weight.shape[0]
        if self.sample_rate >= 1.0 or not self.training:
            return self.weight, labels
        positive = torch.unique(labels)
        k = max(int(self.sample_rate * n), len(positive))
        score = torch.rand(n, device=labels.device)
        score[positive] = 2.0  # positives always kept
        keep = torch.topk(score, k).indices.sort().values
        remap = torch.full((n,), -1, dtype=torch.long, device=labels.device)
        remap[keep] = torch.arange(k, device=labels.device)
        return self.weight[keep], remap[labels]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        centres, target = self._centres(labels)
        cos = F.linear(F.normalize(embeddings.float()), F.normalize(centres.float()))
        margin = torch.full_like(labels, self.m1, dtype=cos.dtype)
        if pose is not None and self.m2:
            margin = margin + self.m2 * pose_ratio(pose.float())
        logits = cos.clone()
        rows = torch.arange(len(target), device=cos.device)
        logits[rows, target] -= margin
        return F.cross_entropy(self.s * logits, target)


def cosface(dim: int, n_classes: int, s: float = 64.0, m: float = 0.3, sample_rate: float = 1.0) -> LPMC:
    """CosFace (Wang et al. 2018): the LPMC with m2 = 0."""
    return LPMC(dim, n_classes, s=s, m1=m, m2=0.0, sample_rate=sample_rate)
