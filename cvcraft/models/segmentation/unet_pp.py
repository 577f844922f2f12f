"""U-Net++ (Zhou et al. 2018, "UNet++: A Nested U-Net Architecture for Medical Image
Segmentation").

Key idea: replace U-Net's long skips by dense nested ones. Node ``X[i][j]`` (level i, column
j) sees every earlier node of its level and the upsampled node below:

    X[i][0] = H(pool(X[i-1][0]))                      (the encoder)
    X[i][j] = H(cat[X[i][0], ..., X[i][j-1], up(X[i+1][j-1])]),  j >= 1

so the semantic gap between encoder and decoder maps narrows step by step. With deep
supervision a 1x1 head sits on every top node ``X[0][1..L]``; then the network can be
*pruned* at inference: ``prune_level=l`` computes only the nodes with ``i + j <= l`` and
answers with ``X[0][l]``'s head — a smaller, faster U-Net taken from the trained one.
``ensemble=True`` averages the heads instead (the paper's "accurate mode").

``H`` is U-Net's two conv-BN-ReLU; ``up`` is the paper's 2x2 transposed conv to the
target level's width (``up="bilinear"``/``"nearest"``: interpolation, the lower node keeps
its width). Node widths equal their level's encoder width (paper: 32, 64, 128, 256, 512).
``encoder="resnet34"`` uses a zoo ResNet's five maps (strides 2..32) as ``X[i][0]`` and
resizes the logits to the input. Training with deep supervision returns ``(X[0][L] logits,
[X[0][1..L-1] logits])``.

``decoder_channels`` (deepest first) narrows the last node of each level — the nodes
``X[L-1-k][k+1]`` on the path to the output — and, with a ResNet encoder and one more entry,
adds a final ``H`` at input resolution (no skip). With ``SMP_UNETPLUSPLUS`` the network is
segmentation_models_pytorch's ``UnetPlusPlus`` (its "decoder_channels" (256, 128, 64, 32,
16), nearest upsampling, 3x3 head); ``smp_unetplusplus_state_dict`` maps its weights.

With ``up="nearest"`` a node's first conv reads ``up(X[i+1][j-1])`` in polyphase form at the
lower resolution (``NestedNode.forward_up2``): the same output, 2.25x fewer MACs on that part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import resnet_backbone
from cvcraft.models.segmentation.heads import (
    check_min_size,
    is_exporting,
    resize,
    seg_outputs,
)
from cvcraft.models.segmentation.unet import UP_MODES, DoubleConv, match_size
from cvcraft.nn.conv import transposed_conv

# Our kwargs (with encoder="resnet34", i.e. ``unet_pp_resnet34``) that build smp 0.6's
# ``UnetPlusPlus("resnet34")`` defaults: the same convs with the same shapes.
SMP_UNETPLUSPLUS: dict = dict(decoder_channels=(256, 128, 64, 32, 16), up="nearest", head_kernel=3)


# Nearest 2x upsampling then a 3x3 conv (padding 1), per output phase: output row 2y + a
# reads upsampled rows 2y+a-1..2y+a+1, i.e. source rows (y-1, y, y) for a = 0 and (y, y, y+1)
# for a = 1, so each phase is a 2-tap filter over source rows (p-1, p) with p = y + a:
# a = 0 taps [k0, k1 + k2], a = 1 taps [k0 + k1, k2] (the same along columns).
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def nearest2x_phase_kernels(weight: Tensor) -> Tensor:
    """(O, C, 3, 3) -> (4·O, C, 2, 2): the four 2x2 kernels (phases ``(a, b)`` in row-major
    order) that apply ``weight`` to a nearest-2x upsampled map directly at source resolution."""
    taps = _PHASE_TAPS.to(weight)
    k = torch.einsum("asm,btn,ocmn->abocst", taps, taps, weight)  # (2, 2, O, C, 2, 2)
    return k.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def nearest2x_conv3x3(u: Tensor, kernels: Tensor, acc: Tensor | None = None) -> Tensor:
    """``conv3x3(nearest_upsample_2x(u))`` (padding 1, no bias), added into ``acc`` if given.

    Equal (to rounding) to the direct form but 2.25x cheaper: 4 phases x 4 taps on the
    source's ``h·w`` pixels instead of 9 taps on ``4·h·w``, and the upsampled map is never
    written. ``kernels`` from ``nearest2x_phase_kernels``. (B, C, h, w) -> (B, O, 2h, 2w).
    """
    b, _, h, w = u.shape
    o = kernels.shape[0] // 4
    out = F.conv2d(u, kernels, padding=1)  # (B, 4·O, h+1, w+1); phase (a, b) at offset (a, b)
    sb, sc, sy, sx = out.stride()
    # Phase (a, b) value at (y, x) sits at channel (2a+b)·O + o, row y + a, column x + b:
    # one strided view (B, O, h, a, w, b) interleaves the phases without a copy.
    phases = out.as_strided((b, o, h, 2, w, 2), (sb, sc, sy, 2 * o * sc + sy, sx, o * sc + sx))
    if acc is None:
        return phases.reshape(b, o, 2 * h, 2 * w)
    acc.view(b, o, h, 2, w, 2).add_(phases)
    return acc


class NestedNode(DoubleConv):
    """U-Net++'s node ``H`` (two conv-BN-ReLU) that can also take its upsampled input in
    polyphase form (``forward_up2``): same weights and keys as ``DoubleConv``.

    Why: with nearest upsampling the first conv's share on ``up(X[i+1][j-1])`` — a third to
    two thirds of the decoder's MACs — shrinks 2.25x (``nearest2x_conv3x3``), and neither
    the upsampled map nor its copy into the concatenation is ever written.
    """

    def forward_up2(self, skips: list[Tensor], below: Tensor) -> Tensor:
        """``self(cat[*skips, nearest_up_2x(below)])`` without building the concatenation's
        upsampled part: (B, C, h, w) below, skips at (2h, 2w) -> (B, out, 2h, 2w)."""
        conv1 = self[0]
        weight, bias = conv1.conv.weight, conv1.conv.bias
        skip_ch = sum(t.shape[1] for t in skips)
        acc = None
        if skips:
            cat = skips[0] if len(skips) == 1 else torch.cat(skips, dim=1)
            acc = F.conv2d(cat, weight[:, :skip_ch], bias, padding=1)  # (B, out, 2h, 2w)
        # Rebuilt every call (a few ms for the whole decoder, under 2%): no cache to go stale
        # when the weights change in place.
        kernels = nearest2x_phase_kernels(weight[:, skip_ch:])  # the upsampled input's part
        y = nearest2x_conv3x3(below, kernels, acc)
        if acc is None and bias is not None:
            y = y + bias.view(1, -1, 1, 1)
        return self[1](conv1.act(conv1.bn(y)))


class UNetPlusPlus(nn.Module):
    """U-Net++ with nested dense skips, optional deep supervision and pruned inference.

    Args:
        base: width of level 0 (paper 32); level i has ``base·2^i``. depth: levels below 0.
        deep_supervision: a head on every top node; training returns their logits as aux.
        prune_level: at inference use only the sub-network of that depth (1..depth);
            needs ``deep_supervision``. Can be changed on the built model.
        ensemble: at inference average all heads (deep supervision only).
        bilinear: interpolate instead of the transposed-conv upsampling.
        encoder: ``None`` (paper) or a zoo ResNet name.
        decoder_channels: widths of the last node of each level, deepest first (``depth``
            entries), plus with a ResNet encoder optionally the width of a final block at
            input resolution (``depth + 1`` entries). ``None``: the paper's widths. Not
            with ``deep_supervision`` (the heads would see different widths).
        up: "transposed", "bilinear" or "nearest"; ``None`` follows ``bilinear``.
        head_kernel: kernel of the classifier conv (paper 1; smp uses 3).
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 3,
        base: int = 32,
        depth: int = 4,
        deep_supervision: bool = False,
        prune_level: int | None = None,
        ensemble: bool = False,
        bilinear: bool = False,
        norm: str | None = "batchnorm",
        encoder: str | None = None,
        decoder_channels: Sequence[int] | None = None,
        up: str | None = None,
        head_kernel: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 256, 256)
        if encoder is None:
            if depth < 1 or base < 2:
                raise ConfigError(
                    f"UNetPlusPlus needs depth >= 1 and base >= 2, got {depth}, {base}"
                )
            widths = [base * 2**i for i in range(depth + 1)]
            self.backbone = None
            self.enc = nn.ModuleList(
                DoubleConv(a, b, norm) for a, b in zip([in_chans, *widths], widths)
            )
        else:
            self.backbone = resnet_backbone(encoder, in_chans)
            widths = [f["num_chs"] for f in self.backbone.feature_info]
            depth = len(widths) - 1
        self.depth, self.deep_supervision, self.ensemble = depth, deep_supervision, ensemble
        if (prune_level is not None or ensemble) and not deep_supervision:
            raise ConfigError("UNetPlusPlus prune_level / ensemble need deep_supervision=True")
        self.prune_level = prune_level
        self._check_prune()
        self.up_mode = up if up is not None else ("bilinear" if bilinear else "transposed")
        if self.up_mode not in UP_MODES:
            raise ConfigError(f"UNetPlusPlus up must be one of {UP_MODES}, got {up!r}")
        transposed = self.up_mode == "transposed"
        keys = _keys(depth)
        width = {(i, j): widths[i] for i in range(depth + 1) for j in range(depth - i + 1)}
        final = self._decoder_widths(width, decoder_channels, encoder is not None)
        ups, nodes = {}, {}
        for i, j in keys:
            below = width[i + 1, j - 1]  # channels of X[i+1][j-1]
            if transposed:  # the paper's up-conv brings it to the level's encoder width
                ups[f"x{i}_{j}"] = transposed_conv(below, widths[i], 2, k=2)
                below = widths[i]
            ins = sum(width[i, k] for k in range(j)) + below
            nodes[f"x{i}_{j}"] = NestedNode(ins, width[i, j], norm)
        self.ups, self.nodes = nn.ModuleDict(ups), nn.ModuleDict(nodes)
        out_ch = width[0, depth]
        self.final_up, self.final = None, None
        if final is not None:  # X[0][L] (stride 2) -> up x2 -> H: the input's resolution
            self.final_up = transposed_conv(out_ch, out_ch, 2, k=2) if transposed else None
            self.final, out_ch = NestedNode(out_ch, final, norm), final
        # Deep supervision (no decoder_channels): every X[0][j] is widths[0] wide.
        self.heads = nn.ModuleList(
            nn.Conv2d(out_ch, num_classes, head_kernel, padding=head_kernel // 2)
            for _ in range(depth if deep_supervision else 1)
        )

    def _decoder_widths(
        self, width: dict, decoder_channels: Sequence[int] | None, resnet: bool
    ) -> int | None:
        """Apply ``decoder_channels`` to ``width`` (in place); return the final block's width."""
        if decoder_channels is None:
            return None
        d = self.depth
        allowed = (d, d + 1) if resnet else (d,)
        if len(decoder_channels) not in allowed or self.deep_supervision:
            raise ConfigError(
                f"UNetPlusPlus decoder_channels needs {' or '.join(map(str, allowed))} entries "
                f"(deepest first) and deep_supervision=False, got {tuple(decoder_channels)}"
            )
        for k, c in enumerate(decoder_channels[:d]):
            width[d - 1 - k, k + 1] = c  # the last node of level d-1-k
        return decoder_channels[d] if len(decoder_channels) > d else None

    def _check_prune(self) -> None:
        if self.prune_level is not None and not 1 <= self.prune_level <= self.depth:
            raise ConfigError(
                f"UNetPlusPlus prune_level must be in 1..{self.depth}, got {self.prune_level}"
            )

    def _node(self, key: str, skips: list[Tensor], below: Tensor, size: Sequence[int]) -> Tensor:
        """``H(cat[*skips, up(below)])`` at ``size`` for node ``key`` (or the final block)."""
        node = self.final if key == "final" else self.nodes[key]
        if self.up_mode == "nearest" and not is_exporting():
            if tuple(size) == (2 * below.shape[-2], 2 * below.shape[-1]):  # exact 2x
                return node.forward_up2(skips, below)  # the polyphase form
        up = self.final_up if key == "final" else self.ups[key] if key in self.ups else None
        if up is not None:
            below = up(below)  # (B, w_i, 2h, 2w)
        below = match_size(below, size, self.up_mode)
        return node(torch.cat([*skips, below], dim=1) if skips else below)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        self._check_prune()
        level = self.depth if self.training or self.prune_level is None else self.prune_level
        if self.backbone is not None:
            enc = self.backbone.forward_intermediates(x, range(level + 1))  # strides 2, 4, ..
        else:
            check_min_size(x, 2**level, "unet_pp")
            enc = [self.enc[0](x)]  # (B, base, H, W)
            for down in self.enc[1 : level + 1]:
                enc.append(down(F.max_pool2d(enc[-1], 2)))  # (B, base·2^i, H/2^i, W/2^i)
        grid = [[e] for e in enc]  # grid[i][j] = X[i][j]
        for j in range(1, level + 1):
            for i in range(level - j + 1):
                key, below = f"x{i}_{j}", grid[i + 1][j - 1]
                grid[i].append(self._node(key, grid[i], below, grid[i][0].shape[-2:]))
        if not self.deep_supervision:
            y = grid[0][level]  # (B, w, H/s, W/s), s = 1 (paper encoder) or 2 (ResNet)
            if self.final is not None:
                y = self._node("final", [], y, x.shape[-2:])  # (B, w', H, W)
            return seg_outputs(self.training, self.heads[0](y), [], x.shape[-2:])
        outs = [head(node) for head, node in zip(self.heads, grid[0][1:])]  # X[0][1..level]
        if not self.training and self.ensemble:
            return resize(torch.stack(outs).mean(0), x.shape[-2:])
        return seg_outputs(self.training, outs[-1], outs[:-1], x.shape[-2:])


def smp_unetplusplus_state_dict(
    model: UNetPlusPlus, smp_state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Map an smp ``UnetPlusPlus`` state dict onto ``model`` (built with a ResNet encoder and
    ``SMP_UNETPLUSPLUS``): returns a state dict for ``model.load_state_dict``.

    smp names node ``X[i][j]`` ``x_{a}_{b}`` with ``b = L-1-i`` (level from the deepest skip)
    and ``a = L-i-j`` (columns left until the output), its final block ``x_0_L``; it
    concatenates ``[up(X[i+1][j-1]), X[i][j-1], ..., X[i][0]]`` where we concatenate
    ``[X[i][0], ..., X[i][j-1], up(...)]``, so each node's first conv gets its input-channel
    blocks reordered. Encoder keys differ only by prefix (``encoder.`` vs ``backbone.``).
    """
    if model.backbone is None or model.final is None or model.up_mode == "transposed":
        raise ConfigError("smp_unetplusplus_state_dict needs a ResNet encoder and SMP_UNETPLUSPLUS")
    d = model.depth
    widths = [f["num_chs"] for f in model.backbone.feature_info]
    node = {f"x_{d - i - j}_{d - 1 - i}": (i, j) for i, j in _keys(d)}
    # smp's Conv2dReLU is (conv, norm, relu) -> our ConvBNAct (conv, bn, act).
    sub = {"conv1.0": "0.conv", "conv1.1": "0.bn", "conv2.0": "1.conv", "conv2.1": "1.bn"}
    out: dict[str, Tensor] = {}
    for k, v in smp_state.items():
        if k.startswith("encoder."):
            out["backbone." + k.removeprefix("encoder.")] = v
            continue
        if k.startswith("segmentation_head.0."):
            out["heads.0." + k.removeprefix("segmentation_head.0.")] = v
            continue
        name, conv, layer, leaf = k.removeprefix("decoder.blocks.").split(".")
        if name not in node:  # the final block x_0_L
            out[f"final.{sub[f'{conv}.{layer}']}.{leaf}"] = v
            continue
        i, j = node[name]
        if f"{conv}.{layer}" == "conv1.0":  # [up, X[i][j-1], .., X[i][0]] -> [X[i][0], .., up]
            same = [widths[i]] + [model.nodes[f"x{i}_{c}"][1].conv.out_channels
                                  for c in range(1, j)]  # fmt: skip
            blocks = v.split([v.shape[1] - sum(same), *same[::-1]], dim=1)
            v = torch.cat([*blocks[:0:-1], blocks[0]], dim=1)
        out[f"nodes.x{i}_{j}.{sub[f'{conv}.{layer}']}.{leaf}"] = v
    return out


def _keys(depth: int) -> list[tuple[int, int]]:
    """Node indices ``(i, j)`` of the nested decoder, column by column."""
    return [(i, j) for j in range(1, depth + 1) for i in range(depth - j + 1)]


@register_model("unet_pp")
def unet_pp(num_classes: int = 2, in_chans: int = 3, **kw) -> UNetPlusPlus:
    """U-Net++ (paper widths 32..512); ``deep_supervision``, ``prune_level``, ``encoder`` kwargs."""
    return UNetPlusPlus(num_classes, in_chans, **kw)


@register_model("unetplusplus")
def unetplusplus(num_classes: int = 2, in_chans: int = 3, **kw) -> UNetPlusPlus:
    """Alias of ``unet_pp``."""
    return UNetPlusPlus(num_classes, in_chans, **kw)


@register_model()
def unet_pp_resnet34(num_classes: int = 2, in_chans: int = 3, **kw) -> UNetPlusPlus:
    """U-Net++ on a ResNet-34 encoder (nodes as wide as their level's encoder map)."""
    return UNetPlusPlus(num_classes, in_chans, encoder="resnet34", **kw)
