"""Multi-layer building blocks: residual (re-exported), dense, Inception and CSP.

- ``BasicBlock`` / ``Bottleneck`` (He et al. 2016): residual blocks, in ``nn/residual.py``
  and re-exported here.
- ``DenseLayer`` / ``DenseBlock`` (Huang et al. 2017, DenseNet): every layer sees the concat
  of all earlier maps and adds ``growth_rate`` new channels; BN-ReLU-1x1 (to ``bn_size·k``)
  then BN-ReLU-3x3. Names match torchvision's DenseNet (``denselayerN.norm1/conv1...``).
- ``InceptionBlock`` (Szegedy et al. 2015, GoogLeNet v1): 1x1 | 1x1->3x3 | 1x1->5x5 |
  3x3 max-pool->1x1, concatenated. Names match torchvision's ``Inception``.
- ``CSPBlock`` (Wang et al. 2020 CSPNet, in the YOLOv5 "C3" form): split into two 1x1
  paths, run bottlenecks on one only, concat, fuse with a 1x1 — half the bottleneck cost
  and a gradient path that skips the stack.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.residual import BasicBlock, Bottleneck


class DenseLayer(nn.Module):
    """One DenseNet-BC layer: concat(inputs) -> BN-ReLU-Conv1x1 (bn_size·k) -> BN-ReLU-Conv3x3 (k).

    The 1x1 "bottleneck" caps the 3x3's input at ``bn_size·k`` channels however many
    earlier maps are concatenated. Accepts one tensor or a list of earlier maps
    [(B, c_i, H, W), ...] with Σc_i = ``in_ch``; returns only the new (B, k, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def bottleneck(self, *inputs: torch.Tensor) -> torch.Tensor:
        """concat -> BN -> ReLU -> 1x1 conv: (B, Σc_i, H, W) -> (B, bn_size·k, H, W)."""
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, dim=1))))

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        if self.memory_efficient and self.training and any(t.requires_grad for t in inputs):
            # recompute concat + bottleneck in backward: O(L) activation memory, not O(L²)
            y = checkpoint(self.bottleneck, *inputs, use_reentrant=False)
        else:
            y = self.bottleneck(*inputs)
        y = self.conv2(self.relu2(self.norm2(y)))  # (B, k, H, W)
        return F.dropout(y, self.drop_rate, self.training) if self.drop_rate > 0 else y


class DenseBlock(nn.ModuleDict):
    """``num_layers`` DenseLayers, layer i taking ``in_ch + i·k`` channels.

    (B, in_ch, H, W) -> (B, in_ch + num_layers·k, H, W): the input and every new map.
    """

    def __init__(
        self,
        num_layers: int,
        in_ch: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(
                in_ch + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient
            )
            self[f"denselayer{i + 1}"] = layer
        self.out_channels = in_ch + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, dim=1)


class InceptionBlock(nn.Module):
    """GoogLeNet's Inception module: four parallel branches concatenated on channels.

    ``branch1`` 1x1 (c1); ``branch2`` 1x1 (c3_red) -> 3x3 (c3); ``branch3`` 1x1 (c5_red) ->
    ``k5`` x ``k5`` (c5); ``branch4`` 3x3/1 max-pool -> 1x1 (pool_proj). The paper uses
    ``k5=5``; torchvision's GoogLeNet (and its pretrained weights) uses 3 there — pass
    ``k5=3`` to match it. Every conv is ``ConvBNAct`` (the paper predates BN: ``norm=None``
    gives its conv+bias+ReLU form; torchvision uses BN with ``eps=1e-3``).

    (B, in_ch, H, W) -> (B, c1 + c3 + c5 + pool_proj, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        c1: int,
        c3_red: int,
        c3: int,
        c5_red: int,
        c5: int,
        pool_proj: int,
        k5: int = 5,
        act: str | None = "relu",
        norm: str | None = "batchnorm",
        norm_kw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()

        def cba(i: int, o: int, k: int) -> ConvBNAct:
            return ConvBNAct(i, o, k, act=act, norm=norm, norm_kw=norm_kw)

        self.branch1 = cba(in_ch, c1, 1)
        self.branch2 = nn.Sequential(cba(in_ch, c3_red, 1), cba(c3_red, c3, 3))
        self.branch3 = nn.Sequential(cba(in_ch, c5_red, 1), cba(c5_red, c5, k5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), cba(in_ch, pool_proj, 1))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], dim=1)


class CSPBottleneck(nn.Module):
    """YOLO's residual bottleneck: 1x1 (in -> e·out) -> 3x3 (-> out), plus ``x`` when
    ``shortcut`` and in == out. (B, in_ch, H, W) -> (B, out_ch, H, W)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        shortcut: bool = True,
        e: float = 1.0,
        act: str | None = "silu",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        hidden = int(out_ch * e)
        self.cv1 = ConvBNAct(in_ch, hidden, 1, act=act, norm=norm)
        self.cv2 = ConvBNAct(hidden, out_ch, 3, act=act, norm=norm)
        self.add = shortcut and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CSPBlock(nn.Module):
    """Cross Stage Partial block, YOLOv5 "C3" form: ``cv3(cat[m(cv1(x)), cv2(x)])``.

    ``cv1``, ``cv2``: 1x1 convs to ``hidden = int(out_ch·e)`` each (the two partial paths);
    ``m``: ``n`` CSPBottlenecks on the first path only; ``cv3``: 1x1 fusing 2·hidden -> out.

    (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        n: int = 1,
        shortcut: bool = True,
        e: float = 0.5,
        act: str | None = "silu",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        hidden = int(out_ch * e)
        if hidden < 1 or n < 0:
            raise ConfigError(f"CSPBlock: need n >= 0 and out_ch·e >= 1, got n={n}, e={e}")
        self.cv1 = ConvBNAct(in_ch, hidden, 1, act=act, norm=norm)
        self.cv2 = ConvBNAct(in_ch, hidden, 1, act=act, norm=norm)
        self.m = nn.Sequential(
            *(CSPBottleneck(hidden, hidden, shortcut, 1.0, act, norm) for _ in range(n))
        )
        self.cv3 = ConvBNAct(2 * hidden, out_ch, 1, act=act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.m(self.cv1(x))  # (B, hidden, H, W): the path through the bottlenecks
        b = self.cv2(x)  # (B, hidden, H, W): the partial path that skips them
        return self.cv3(torch.cat([a, b], dim=1))


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CSPBlock",
    "CSPBottleneck",
    "DenseBlock",
    "DenseLayer",
    "InceptionBlock",
]
