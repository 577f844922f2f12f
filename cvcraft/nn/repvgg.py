"""RepVGG block and structural re-parameterisation (Ding et al. 2021, "RepVGG: Making
VGG-style ConvNets Great Again").

Key idea: train a block with three parallel branches, ``act(BN(conv3x3(x)) + BN(conv1x1(x))
+ BN(x))`` (the identity branch only when input and output shapes agree), which optimises
like a ResNet; for inference fold them into *one* 3x3 conv with bias, since every branch is
linear in eval mode:

- conv + BN: ``W' = W * gamma / sqrt(var + eps)``, ``b' = beta - mean * gamma / sqrt(var + eps)``
- a 1x1 kernel is a 3x3 kernel that is zero except at the centre;
- the identity is a 3x3 kernel with 1 at the centre of channel i's own input (per group).

The fused network is a plain VGG-like stack of 3x3 conv + ReLU, fast on GPUs and simple
to deploy; the outputs are identical up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.activations import get_act
from cvcraft.nn.conv import ConvBNAct


def fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding bias-free conv kernel.

    kernel (C_out, C_in/g, k, k) -> (kernel * gamma/std, beta - mean * gamma/std), with
    ``std = sqrt(running_var + eps)``; shapes (C_out, C_in/g, k, k) and (C_out,).
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    return kernel * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepVGGBlock(nn.Module):
    """Train-time 3x3 + 1x1 + identity branches; one 3x3 conv after :meth:`reparameterize`.

    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride). Children before fusing:
    ``conv3x3`` (conv + bn), ``conv1x1`` (conv + bn), ``identity`` (BN, only if
    ``stride == 1 and c_in == c_out``); after: ``fused`` (Conv2d 3x3 with bias).
    ``act`` names the activation (ReLU as RepVGG/YOLOv6; YOLOv7's RepConv uses SiLU) and
    ``identity=False`` drops the identity branch even where shapes allow it (YOLOv7's RepConv).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        groups: int = 1,
        act: str = "relu",
        identity: bool = True,
    ) -> None:
        super().__init__()
        if c_in % groups or c_out % groups:
            raise ConfigError(
                f"RepVGGBlock: channels {c_in}->{c_out} not divisible by groups={groups}"
            )
        self.c_in, self.c_out, self.stride, self.groups = c_in, c_out, stride, groups
        # Linear conv + BN branches (children conv, bn; act is an Identity).
        self.conv3x3: ConvBNAct | None = ConvBNAct(c_in, c_out, 3, stride, g=groups, act=None)
        self.conv1x1: ConvBNAct | None = ConvBNAct(c_in, c_out, 1, stride, g=groups, act=None)
        self.identity: nn.BatchNorm2d | None = (
            nn.BatchNorm2d(c_in) if identity and stride == 1 and c_in == c_out else None
        )
        self.fused: nn.Conv2d | None = None
        self.act = get_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        out = self.conv3x3(x) + self.conv1x1(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel (c_out, c_in/g, 3, 3) and bias (c_out,) of the three branches.

        Uses the BN running statistics, so it equals the block in **eval** mode.
        """
        k3, b3 = fuse_bn(self.conv3x3.conv.weight, self.conv3x3.bn)
        k1, b1 = fuse_bn(self.conv1x1.conv.weight, self.conv1x1.bn)
        kernel = k3 + F.pad(k1, (1, 1, 1, 1))  # 1x1 sits at the centre of the 3x3 window
        bias = b3 + b1
        if self.identity is not None:
            per_group = self.c_in // self.groups
            eye = torch.zeros_like(k3)
            ch = torch.arange(self.c_in, device=eye.device)
            eye[ch, ch % per_group, 1, 1] = 1.0  # out channel i copies its own input channel
            kid, bid = fuse_bn(eye, self.identity)
            kernel, bias = kernel + kid, bias + bid
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one equivalent 3x3 conv (in place; idempotent)."""
        if self.fused is not None:
            return
        kernel, bias = self.equivalent_kernel_bias()
        conv = nn.Conv2d(self.c_in, self.c_out, 3, self.stride, 1, groups=self.groups, bias=True)
        conv = conv.to(device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.fused = conv
        self.conv3x3 = self.conv1x1 = self.identity = None


def reparameterize_model(model: nn.Module) -> nn.Module:
    """Fuse every re-parameterisable block of ``model`` in place and return it in eval mode.

    Any submodule with a ``reparameterize()`` method is fused (RepVGG blocks and anything
    built the same way). The result is for inference: BN statistics are baked in.
    """
    model.eval()
    for m in list(model.modules()):
        if m is not model and hasattr(m, "reparameterize"):
            m.reparameterize()
    return model
