"""SK-ResNet (Li et al. 2019, "Selective Kernel Networks").

Key idea: let each neuron choose its receptive field. A selective-kernel conv runs M
branches with different kernels (here 3x3 and a dilated 3x3 = 5x5 field) and mixes them
with attention computed from their sum:
split ``U_m = branch_m(x)``; fuse ``s = mean_hw(sum_m U_m)``, ``z = relu(bn(W_r s))``;
select ``a = softmax_m(W_s z)`` (per channel, over the M branches), ``V = sum_m a_m * U_m``.

``skresnet18/34`` follow timm's variant: BasicBlocks whose first conv is the SK conv, each
branch fed half the input channels (``split_input``), an attention width of ``C/8``
rounded to a multiple of 16 (at least 16). Module names equal timm's
(``layer1.0.conv1.paths.0.conv``, ``conv1.attn.fc_select``), so its state_dict loads with
``strict=True``.
Shapes: as ResNet-18 (224 input -> layer4 (B, 512, 7, 7) -> (B, num_classes)).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.mobilenetv2 import round_channels
from cvcraft.models.classification.resnet import ResNet
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import ConvBNAct

__all__ = ["SKBasicBlock", "SelectiveKernelConv", "skresnet18", "skresnet34"]


class SelectiveKernelAttn(nn.Module):
    """Fuse + select: (B, M, C, H, W) branch outputs -> (B, M, C, 1, 1) softmax weights."""

    def __init__(self, channels: int, num_paths: int, attn_channels: int) -> None:
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, 1, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, m, c = u.shape[:3]
        s = u.sum(1).mean((2, 3), keepdim=True)  # (B, C, 1, 1): fuse, then squeeze
        z = self.act(self.bn(self.fc_reduce(s)))  # (B, d, 1, 1)
        return self.fc_select(z).view(b, m, c, 1, 1).softmax(dim=1)  # over the branches


class SelectiveKernelConv(nn.Module):
    """SK conv: M 3x3 conv-BN-ReLU branches with dilations 1..M, mixed by ``attn``.

    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride). ``split_input``: branch m sees the
    m-th slice of the input channels (timm's cheaper form) instead of all of them.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        num_paths: int = 2,
        rd_ratio: float = 1 / 8,
        rd_divisor: int = 16,
        split_input: bool = True,
    ) -> None:
        super().__init__()
        if split_input and c_in % num_paths:
            raise ConfigError(
                f"SelectiveKernelConv: {c_in} input channels do not split into {num_paths} paths"
            )
        self.split_input, self.num_paths = split_input, num_paths
        c_path = c_in // num_paths if split_input else c_in
        self.paths = nn.ModuleList(
            ConvBNAct(c_path, c_out, 3, stride, d=d, act_kw={"inplace": True})
            for d in range(1, num_paths + 1)
        )
        rd = round_channels(c_out * rd_ratio, rd_divisor)  # attention width d
        self.attn = SelectiveKernelAttn(c_out, num_paths, rd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.chunk(self.num_paths, 1) if self.split_input else [x] * self.num_paths
        u = torch.stack([p(xi) for p, xi in zip(self.paths, xs)], 1)  # (B, M, C, H', W')
        return (u * self.attn(u)).sum(1)  # (B, C, H', W')


class SKBasicBlock(nn.Module):
    """BasicBlock with an SK first conv: ``relu(bn(conv3x3(sk(x))) + shortcut(x))``.
    (B, in_ch, H, W) -> (B, width, H/stride, W/stride); ``expansion = 1``."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample=None, groups=1,
                 base_width=64) -> None:  # fmt: skip
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ConfigError("SKBasicBlock supports only groups=1, base_width=64")
        self.conv1 = SelectiveKernelConv(in_ch, width, stride)
        self.conv2 = ConvBNAct(width, width, 3, act=None)
        self.act = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.conv2.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv2(self.conv1(x)) + shortcut)


_CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4}  # the paper: SGD 0.1 at 256


@register_model(default_cfg=_CFG)
def skresnet18(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """SK-ResNet-18 (timm's layout): ResNet-18 with SK first convs; 12.0M params."""
    return ResNet(SKBasicBlock, (2, 2, 2, 2), num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def skresnet34(num_classes: int = 1000, in_chans: int = 3, **kw) -> ResNet:
    """SK-ResNet-34 (timm's layout): ResNet-34 with SK first convs; 22.3M params."""
    return ResNet(SKBasicBlock, (3, 4, 6, 3), num_classes, in_chans, **kw)
