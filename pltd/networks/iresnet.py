"""IResNet (Deng et al., ArcFace; insightface `recognition/arcface_torch/backbones/iresnet.py`) and
IResNet-Multi (Lee et al. 2024, Figure 7: stages 1–3 shared, stage 4 and a head per task).

Layer names and shapes match insightface's, so its IResNet state_dicts load; IResNet50 has
43.6 M parameters with a 512-d embedding at 112x112.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from pltd.networks._registry import register
from pltd.networks.heads import HeatmapGuide, pose_outputs


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-05)
        self.conv1 = conv3x3(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


def make_stage(cin: int, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
    down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-05))
    return nn.Sequential(
        IBasicBlock(cin, planes, stride, down), *(IBasicBlock(planes, planes) for _ in range(blocks - 1))
    )


class EmbeddingHead(nn.Module):
    """insightface's output block: BN, dropout, flatten, FC to the embedding, BN (scale fixed)."""

    def __init__(self, channels: int, spatial: int, dim: int, dropout: float = 0.0, final_bn: bool = True):
        super().__init__()
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(channels * spatial * spatial, dim)
        self.features = nn.BatchNorm1d(dim, eps=1e-05) if final_bn else nn.Identity()
        if final_bn:
            nn.init.constant_(self.features.weight, 1.0)
            self.features.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(torch.flatten(self.dropout(self.bn2(x)), 1)))


class IResNet(nn.Module):
    """Face-recognition IResNet: 112x112 → 512-d embedding (returned as {"embedding": …})."""

    def __init__(self, layers: list[int], dim: int = 512, width: int = 64, input_size: int = 112, dropout: float = 0.0):
        super().__init__()
        self.conv1 = conv3x3(3, width)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-05)
        self.prelu = nn.PReLU(width)
        widths = [width, width * 2, width * 4, width * 8]
        cin = width
        for i, (w, n) in enumerate(zip(widths, layers, strict=True)):
            setattr(self, f"layer{i + 1}", make_stage(cin, w, n))
            cin = w
        # insightface's output block, at the top level as there (bn2, dropout, fc, features)
        head = EmbeddingHead(cin, input_size // 16, dim, dropout)
        self.bn2, self.dropout, self.fc, self.features = head.bn2, head.dropout, head.fc, head.features
        _init(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(torch.flatten(self.dropout(self.bn2(x)), 1)))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.prelu(self.bn1(self.conv1(x))))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.embed(self.layer4(self.stem(x)))}


POSE_HEADS = ("euler", "6d", "heatmap", "heatmap_6d")


class IResNetMulti(IResNet):
    """Stages 1–3 shared; stage 4 copied per task with its own head: embedding, 136 landmarks, 3 angles.

    Options from related systems (off by default, so that the network is exactly the paper's, module
    for module): `pose_head` "6d" (6 outputs → R by Gram–Schmidt, angles read back: `heads.py`),
    "heatmap" (ATPN: a heatmap of the predicted landmarks fused with stage-2 features into the pose
    branch's input), "heatmap_6d" (both); `visibility_head` (68 visibility logits from the FLD branch).
    """

    def __init__(self, layers: list[int], dim: int = 512, width: int = 64, input_size: int = 112, dropout: float = 0.0,
                 pose_head: str = "euler", visibility_head: bool = False):  # fmt: skip
        super().__init__(layers, dim, width, input_size, dropout)
        if pose_head not in POSE_HEADS:
            raise ValueError(f"pose_head {pose_head!r}: expected one of {', '.join(POSE_HEADS)}")
        c, s = width * 8, input_size // 16
        self.six_d, self.guided = pose_head.endswith("6d"), pose_head.startswith("heatmap")
        self.layer4_fld = copy.deepcopy(self.layer4)
        self.layer4_hpe = copy.deepcopy(self.layer4)
        self.head_fld = EmbeddingHead(c, s, 136, final_bn=False)
        self.head_hpe = EmbeddingHead(c, s, 6 if self.six_d else 3, final_bn=False)
        _init(self.layer4_fld)
        _init(self.layer4_hpe)
        # new modules only when asked for, after the paper's: the default draws the same random init
        self.guide = HeatmapGuide(width * 2, width * 4) if self.guided else None
        self.head_vis = EmbeddingHead(c, s, 68, final_bn=False) if visibility_head else None
        if self.guide is not None:
            _init(self.guide)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.guide is None and self.head_vis is None and not self.six_d:
            shared = self.stem(x)
            return {
                "embedding": self.embed(self.layer4(shared)),
                "landmarks": self.head_fld(self.layer4_fld(shared)),
                "pose": self.head_hpe(self.layer4_hpe(shared)),
            }
        low = self.layer2(self.layer1(self.prelu(self.bn1(self.conv1(x)))))
        shared = self.layer3(low)
        fld = self.layer4_fld(shared)
        out = {"embedding": self.embed(self.layer4(shared)), "landmarks": self.head_fld(fld)}
        pose_in = shared + self.guide(low, out["landmarks"]) if self.guide is not None else shared
        out |= pose_outputs(self.head_hpe(self.layer4_hpe(pose_in)), self.six_d)
        if self.head_vis is not None:
            out["visibility"] = self.head_vis(fld)
        return out


def _init(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.normal_(mod.weight, 0, 0.1)
        elif isinstance(mod, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.constant_(mod.weight, 1)
            nn.init.constant_(mod.bias, 0)


LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}


@register
def iresnet18(**kw) -> IResNet:
    return IResNet(LAYERS[18], **kw)


@register
def iresnet34(**kw) -> IResNet:
    return IResNet(LAYERS[34], **kw)


@register
def iresnet50(**kw) -> IResNet:
    return IResNet(LAYERS[50], **kw)


@register
def iresnet100(**kw) -> IResNet:
    return IResNet(LAYERS[100], **kw)


@register
def iresnet50_multi(**kw) -> IResNetMulti:
    return IResNetMulti(LAYERS[50], **kw)


@register
def iresnet_tiny(**kw) -> IResNet:
    """Test variant: one block per stage, 8 base channels."""
    return IResNet([1, 1, 1, 1], width=kw.pop("width", 8), dim=kw.pop("dim", 32), **kw)


@register
def iresnet_multi_tiny(**kw) -> IResNetMulti:
    return IResNetMulti([1, 1, 1, 1], width=kw.pop("width", 8), dim=kw.pop("dim", 32), **kw)
