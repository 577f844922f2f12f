"""Convolution variants: conv-norm-act, depthwise-separable, grouped, dilated (HDC), deformable,
transposed.

All take and return NCHW tensors. ``ConvBNAct`` is the workhorse the other layers and the
models build from; its children are named ``conv``/``bn``/``act`` so ``nn.fuse`` can fold
the norm into the conv for inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from cvcraft.errors import ConfigError
from cvcraft.nn.activations import get_act
from cvcraft.nn.norm import get_norm


def autopad(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H, W at stride 1 ("same"): ``d·(k-1)/2`` (exact for odd ``k``)."""
    return dilation * (kernel_size - 1) // 2


def _act_inplace(act: nn.Module, y: torch.Tensor) -> torch.Tensor | None:
    """``act(y)`` computed in ``y``'s own memory for the elementwise activations that allow it,
    else None. Only for a fresh ``y`` that no graph needs (no grad): saves one allocation the
    size of the layer's output, whose page faults dominate at large maps (4 % of a YOLO-s
    forward at 640 px, batch 8). In training these activations' backward needs their input
    (ReLU's does not; ``ConvBNAct.forward`` treats it apart)."""
    kind = type(act)
    if kind is nn.SiLU:
        return F.silu(y, inplace=True)
    if kind is nn.ReLU:
        return torch.relu_(y)
    if kind is nn.Hardswish:
        return F.hardswish(y, inplace=True)
    if kind is nn.LeakyReLU:
        return F.leaky_relu_(y, act.negative_slope)
    if kind is nn.ReLU6:
        return F.hardtanh_(y, 0.0, 6.0)
    return None


def _check_groups(in_ch: int, out_ch: int, groups: int, where: str) -> None:
    if groups <= 0 or in_ch % groups or out_ch % groups:
        raise ConfigError(
            f"{where}: groups={groups} must divide both in_ch={in_ch} and out_ch={out_ch}"
        )


class ConvBNAct(nn.Module):
    """``act(norm(conv(x)))``: the conv -> BatchNorm -> activation unit of most CNNs.

    Args:
        in_ch, out_ch, k, s: channels, kernel size, stride.
        p: padding; ``None`` gives "same" padding ``d·(k-1)/2``.
        d, g: dilation and groups.
        act: activation name (``nn.activations``) or module; ``None`` for none.
        norm: norm name (``nn.norm``) or ``None``; the conv has a bias only without a norm
            (a norm's shift makes a conv bias redundant).
        norm_kw, act_kw: extra constructor arguments (e.g. ``{"eps": 1e-3}``).

    (B, in_ch, H, W) -> (B, out_ch, H', W'), H' = floor((H + 2p - d(k-1) - 1)/s) + 1.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int = 3,
        s: int = 1,
        p: int | None = None,
        d: int = 1,
        g: int = 1,
        act: str | nn.Module | None = "relu",
        norm: str | None = "batchnorm",
        norm_kw: dict[str, Any] | None = None,
        act_kw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_groups(in_ch, out_ch, g, "ConvBNAct")
        p = autopad(k, d) if p is None else p
        self.conv = nn.Conv2d(in_ch, out_ch, k, s, p, dilation=d, groups=g, bias=norm is None)
        self.bn = get_norm(norm, out_ch, **(norm_kw or {}))
        self.act = get_act(act, **(act_kw or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        act = self.act
        # conv/BN outputs are fresh tensors nothing else reads, so the activation may
        # overwrite them: ReLU always (its backward reads its output, as in torchvision's
        # ResNet), the others only without autograd (inference, frozen layers). The module
        # itself runs when someone watches it (hooks: MAC counting, feature extraction) or
        # under fx tracing (a Proxy).
        if not (isinstance(y, torch.fx.Proxy) or act._forward_hooks or act._forward_pre_hooks):
            if type(act) is nn.ReLU:
                return torch.relu_(y)
            if not y.requires_grad:
                out = _act_inplace(act, y)
                if out is not None:
                    return out
        return act(y)


class DepthwiseSeparableConv(nn.Module):
    """Depthwise k x k conv (one filter per channel) then pointwise 1x1 conv (MobileNetV1).

    Factorising a k x k conv this way costs ``C·k² + C·C'`` weights instead of
    ``C·C'·k²``. Both stages are ``ConvBNAct`` named ``dw`` and ``pw``;
    ``pw_act=None`` gives the linear projection used by MobileNetV2/EfficientNet.

    (B, in_ch, H, W) -> (B, out_ch, H/s, W/s).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int = 3,
        s: int = 1,
        d: int = 1,
        act: str | nn.Module | None = "relu",
        pw_act: str | nn.Module | None = "relu",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_ch, in_ch, k, s, d=d, g=in_ch, act=act, norm=norm)
        self.pw = ConvBNAct(in_ch, out_ch, 1, act=pw_act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """1x1 conv: a per-pixel linear map across channels (projection, bottleneck, expansion)."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=bias)


def grouped_conv(
    in_ch: int, out_ch: int, k: int = 3, groups: int = 2, stride: int = 1, bias: bool = False
) -> nn.Conv2d:
    """Grouped conv (AlexNet, ResNeXt): channels split in ``groups`` convolved independently.

    Equals ``groups`` separate convs (in_ch/g -> out_ch/g) on channel slices, concatenated;
    weights and FLOPs are 1/groups of a dense conv. "Same" padding.
    """
    _check_groups(in_ch, out_ch, groups, "grouped_conv")
    return nn.Conv2d(in_ch, out_ch, k, stride, autopad(k), groups=groups, bias=bias)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (B, g·n, H, W) viewed (B, g, n) -> transposed -> flat.

    Lets information cross groups between two grouped convs. Output channel ``i·g + j``
    is input channel ``j·n + i``.
    """
    b, c, h, w = x.shape
    if c % groups:
        raise ConfigError(f"channel_shuffle: {c} channels do not split into {groups} groups")
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def dilated_conv(
    in_ch: int, out_ch: int, dilation: int, k: int = 3, stride: int = 1, bias: bool = False
) -> nn.Conv2d:
    """Dilated (atrous) conv with "same" padding: taps ``dilation`` pixels apart, so the
    receptive field grows to ``d·(k-1)+1`` at the cost of a k x k conv."""
    return nn.Conv2d(in_ch, out_ch, k, stride, autopad(k, dilation), dilation=dilation, bias=bias)


def _covers_without_holes(rates: Sequence[int], k: int = 3) -> bool:
    """Whether stacked k-tap dilated convs with ``rates`` sample a contiguous 1-D offset range.

    By induction: if the stack so far reaches every offset in [-S, S], adding taps at
    ``{-r·j}`` (|j| <= (k-1)/2) keeps it contiguous iff ``r <= 2S + 1``.
    """
    half, reach = (k - 1) // 2, 0
    for r in rates:
        if r > 2 * reach + 1:
            return False
        reach += half * r
    return True


def hdc_rates(n: int, max_rate: int) -> list[int]:
    """Hybrid Dilated Convolution rates (Wang et al. 2018, "Understanding Convolution for
    Semantic Segmentation"): a sawtooth ``[1, 2, 5, 1, 2, 5, ...]`` of length ``n``.

    Stacking equal rates (2, 2, 2) or rates with a common factor (2, 4, 8) samples only a
    grid of pixels ("gridding"). HDC repeats a short increasing group that starts at 1
    (so no common factor > 1) and whose 3x3 taps jointly cover every offset; the group
    rises roughly geometrically to ``max_rate`` using the fewest layers that avoid holes.
    """
    if n < 1 or max_rate < 1:
        raise ConfigError(f"hdc_rates needs n >= 1 and max_rate >= 1, got n={n}, max={max_rate}")
    group = [1]
    if max_rate > 1:
        for g in range(2, n + 1):
            cand = [round(max_rate ** (i / (g - 1))) for i in range(g)]
            for i in range(1, g):  # strictly increasing after rounding
                cand[i] = max(cand[i], cand[i - 1] + 1)
            if cand[-1] == max_rate and _covers_without_holes(cand):
                group = cand
                break
        else:
            raise ConfigError(
                f"hdc_rates: {n} layers cannot reach rate {max_rate} without holes; "
                f"use more layers or a max_rate <= {(3**n - 1) // 2}"
            )
    # The group starts at 1, so its rates never share a factor > 1 (no gridding).
    return [group[i % len(group)] for i in range(n)]


def hdc_stack(
    channels: int,
    n: int,
    max_rate: int,
    act: str | None = "relu",
    norm: str | None = "batchnorm",
) -> nn.Sequential:
    """``n`` 3x3 ``ConvBNAct`` layers with the HDC sawtooth rates; keeps (B, C, H, W)."""
    return nn.Sequential(
        *(ConvBNAct(channels, channels, 3, d=r, act=act, norm=norm) for r in hdc_rates(n, max_rate))
    )


class DeformConv2d(nn.Module):
    """Deformable convolution (Dai et al. 2017) and its modulated form DCNv2 (Zhu et al. 2019).

    Each of the k x k taps samples at ``p + p_k + Δp_k`` (bilinear), where a plain conv
    branch predicts the offsets ``Δp`` from the input; DCNv2 also predicts a per-tap weight
    ``m_k = σ(·) ∈ (0, 1)``: ``y(p) = Σ_k w_k · m_k · x(p + p_k + Δp_k)``.

    The offset (and mask) branches start at zero, as in the papers, so at initialisation the
    layer is a plain conv (DCNv2: times 0.5, the initial mask). The sampling kernel is
    ``torchvision.ops.deform_conv2d``. ``forward(x, offset, mask)`` may also be given
    offsets/masks computed elsewhere (e.g. from another feature map).

    Shapes: x (B, in_ch, H, W); offset (B, 2·og·k², H', W') as (dy, dx) per tap;
    mask (B, og·k², H', W'); output (B, out_ch, H', W'); og = ``offset_groups``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int = 3,
        s: int = 1,
        p: int | None = None,
        d: int = 1,
        groups: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
        modulated: bool = False,
    ) -> None:
        super().__init__()
        _check_groups(in_ch, out_ch, groups, "DeformConv2d")
        if in_ch % offset_groups:
            raise ConfigError(f"DeformConv2d: offset_groups={offset_groups} must divide {in_ch}")
        self.stride, self.padding, self.dilation = s, autopad(k, d) if p is None else p, d
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch // groups, k, k))
        self.bias = nn.Parameter(torch.empty(out_ch)) if bias else None
        taps = offset_groups * k * k
        branch = dict(kernel_size=k, stride=s, padding=self.padding, dilation=d)
        self.offset = nn.Conv2d(in_ch, 2 * taps, **branch)
        self.mask = nn.Conv2d(in_ch, taps, **branch) if modulated else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Main weight like ``nn.Conv2d``; offset/mask branches zero (start as a plain conv)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        for branch in (self.offset, self.mask):
            if branch is not None:
                nn.init.zeros_(branch.weight)
                nn.init.zeros_(branch.bias)

    def forward(
        self,
        x: torch.Tensor,
        offset: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if offset is None:
            offset = self.offset(x)  # (B, 2·og·k², H', W')
        if mask is None and self.mask is not None:
            mask = self.mask(x).sigmoid()  # (B, og·k², H', W')
        return deform_conv2d(
            x, offset, self.weight, self.bias,
            stride=self.stride, padding=self.padding, dilation=self.dilation, mask=mask,
        )  # fmt: skip


def transposed_conv(
    in_ch: int, out_ch: int, scale: int = 2, k: int | None = None, bias: bool = True
) -> nn.ConvTranspose2d:
    """Transposed ("fractionally strided") conv that upsamples H, W by exactly ``scale``.

    Output size is ``(H-1)·s - 2p + k + op``; choosing ``p = ceil((k-s)/2)`` and
    ``op = (k-s) mod 2`` makes it ``s·H``. Default ``k = 2s`` (4x4 stride 2, as in DCGAN/
    FCN): even overlap between neighbouring outputs, which limits checkerboard artifacts.
    """
    k = 2 * scale if k is None else k
    if k < scale:
        raise ConfigError(f"transposed_conv: kernel {k} must be >= scale {scale}")
    pad, out_pad = (k - scale + 1) // 2, (k - scale) % 2
    return nn.ConvTranspose2d(
        in_ch, out_ch, k, stride=scale, padding=pad, output_padding=out_pad, bias=bias
    )


__all__ = [
    "ConvBNAct",
    "DeformConv2d",
    "DepthwiseSeparableConv",
    "autopad",
    "channel_shuffle",
    "conv1x1",
    "dilated_conv",
    "grouped_conv",
    "hdc_rates",
    "hdc_stack",
    "transposed_conv",
]
