"""U²-Net (Qin et al. 2020, "U²-Net: Going Deeper with Nested U-Structure for Salient Object
Detection").

Key idea: every stage of a U-shaped network is itself a small U-Net, the ReSidual U-block
``RSU-L``: an input conv, an L-level encoder/decoder of ``mid``-channel convs (pooling
between levels, a dilation-2 conv at the bottom) and a residual add of the input conv,
so each stage mixes multi-scale context at full stage resolution. The deep stages use
``RSU-4F``, where dilations 1, 2, 4, 8 replace pooling (their maps are already tiny).
Six side outputs (3x3 conv on each decoder stage and on the bottom stage) are upsampled
to the input and fused by a 1x1 conv; training supervises all seven.

Outputs are logits (the paper applies a sigmoid; a loss does that here). Training returns
``(fused, [side1, ..., side6])``. Pooling uses ``ceil_mode`` and upsampling resizes to the
skip's size, so any input size works. ``u2net`` is the 44M model, ``u2netp`` the 1.1M one.

Shapes (u2net): (B, 3, H, W) -> En_1 RSU-7 (B, 64, H, W) -> ... -> En_6 RSU-4F (B, 512,
H/32, W/32) -> De_1 RSU-7 (B, 64, H, W) -> sides (B, K, H, W) x 6 -> fuse (B, K, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.heads import resize, seg_outputs
from cvcraft.nn.conv import ConvBNAct


def _pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 2, 2, ceil_mode=True)  # (B, C, ceil(H/2), ceil(W/2))


class RSU(nn.Module):
    """ReSidual U-block ``RSU-L`` (``dilated=False``) or ``RSU-LF`` (``dilated=True``).

    RSU-L: ``h = conv_in(x)``; encoder ``e_1 = conv(h)``, ``e_k = conv(pool(e_{k-1}))`` for
    k = 2..L-1; bottom ``b = conv_d2(e_{L-1})``; decoder ``d_{L-1} = conv(cat[b, e_{L-1}])``,
    ``d_k = conv(cat[up(d_{k+1}), e_k])``; output ``d_1 + h``. RSU-LF: no pooling, the
    encoder convs use dilations 1, 2, 4, ... and the bottom twice the last.

    (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(
        self, depth: int, in_ch: int, mid_ch: int, out_ch: int, dilated: bool = False
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"RSU depth must be >= 2, got {depth}")
        self.dilated = dilated
        n = depth - 1  # encoder convs
        enc_d = [2**k for k in range(n)] if dilated else [1] * n
        bottom_d = 2 * enc_d[-1] if dilated else 2
        self.conv_in = ConvBNAct(in_ch, out_ch, 3)
        self.enc = nn.ModuleList(
            ConvBNAct(out_ch if k == 0 else mid_ch, mid_ch, 3, d=d) for k, d in enumerate(enc_d)
        )
        self.bottom = ConvBNAct(mid_ch, mid_ch, 3, d=bottom_d)
        # dec[k] mirrors enc[k]; the outermost (k = 0) goes back to out_ch.
        self.dec = nn.ModuleList(
            ConvBNAct(2 * mid_ch, out_ch if k == 0 else mid_ch, 3, d=d) for k, d in enumerate(enc_d)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)  # (B, out, H, W)
        skips, y = [], h
        for k, conv in enumerate(self.enc):
            if k > 0 and not self.dilated:
                y = _pool(y)  # (B, mid, H/2^k, W/2^k)
            y = conv(y)
            skips.append(y)
        y = self.bottom(y)  # same size as the deepest encoder map
        for conv, skip in zip(reversed(self.dec), reversed(skips)):
            y = conv(torch.cat([resize(y, skip.shape[-2:]), skip], dim=1))
        return y + h


# (depth, dilated, in, mid, out) per stage: encoder En_1..En_6, decoder De_5..De_1.
_U2NET_ENC = [(7, False, 3, 32, 64), (6, False, 64, 32, 128), (5, False, 128, 64, 256),
              (4, False, 256, 128, 512), (4, True, 512, 256, 512),
              (4, True, 512, 256, 512)]  # fmt: skip
_U2NET_DEC = [(4, True, 1024, 256, 512), (4, False, 1024, 128, 256), (5, False, 512, 64, 128),
              (6, False, 256, 32, 64), (7, False, 128, 16, 64)]  # fmt: skip
_U2NETP_ENC = [(7, False, 3, 16, 64), (6, False, 64, 16, 64), (5, False, 64, 16, 64),
               (4, False, 64, 16, 64), (4, True, 64, 16, 64), (4, True, 64, 16, 64)]  # fmt: skip
_U2NETP_DEC = [(4, True, 128, 16, 64), (4, False, 128, 16, 64), (5, False, 128, 16, 64),
               (6, False, 128, 16, 64), (7, False, 128, 16, 64)]  # fmt: skip


class U2Net(nn.Module):
    """U²-Net from a stage table: 6 encoder RSUs (pool between), 5 decoder RSUs, 6 side heads.

    Args:
        enc, dec: ``(depth, dilated, in, mid, out)`` rows (``in`` of the first is replaced
            by ``in_chans``); see ``_U2NET_ENC``/``_U2NET_DEC``.
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_chans: int = 3,
        enc: list[tuple[int, bool, int, int, int]] = _U2NET_ENC,
        dec: list[tuple[int, bool, int, int, int]] = _U2NET_DEC,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 320, 320)
        enc = [(enc[0][0], enc[0][1], in_chans, *enc[0][3:]), *enc[1:]]
        self.enc = nn.ModuleList(RSU(d, i, m, o, f) for d, f, i, m, o in enc)
        self.dec = nn.ModuleList(RSU(d, i, m, o, f) for d, f, i, m, o in dec)
        # Side heads on De_1..De_5 (shallowest first) and on En_6.
        side_ch = [row[4] for row in reversed(dec)] + [enc[-1][4]]
        self.sides = nn.ModuleList(nn.Conv2d(c, num_classes, 3, padding=1) for c in side_ch)
        self.fuse = nn.Conv2d(len(side_ch) * num_classes, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        size = x.shape[-2:]
        skips, y = [], x
        for k, stage in enumerate(self.enc):
            y = stage(y if k == 0 else _pool(y))  # En_k at H/2^(k-1)
            skips.append(y)
        decoded = [y]  # En_6 output is the bottom
        for stage, skip in zip(self.dec, reversed(skips[:-1])):
            y = stage(torch.cat([resize(y, skip.shape[-2:]), skip], dim=1))
            decoded.append(y)
        # decoded = [En_6, De_5, ..., De_1] -> sides in the order De_1..De_5, En_6.
        sides = [resize(head(d), size) for head, d in zip(self.sides, reversed(decoded))]
        fused = self.fuse(torch.cat(sides, dim=1))  # (B, K, H, W)
        return seg_outputs(self.training, fused, sides, size)


@register_model()
def u2net(num_classes: int = 1, in_chans: int = 3, **kw) -> U2Net:
    """U²-Net (44.0M params): RSU-7..RSU-4F stages, six side outputs + fusion."""
    return U2Net(num_classes, in_chans, _U2NET_ENC, _U2NET_DEC, **kw)


@register_model()
def u2netp(num_classes: int = 1, in_chans: int = 3, **kw) -> U2Net:
    """U²-Net† (1.1M params): the same topology with 16 mid / 64 out channels everywhere."""
    return U2Net(num_classes, in_chans, _U2NETP_ENC, _U2NETP_DEC, **kw)
