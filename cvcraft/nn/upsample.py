"""Upsampling layers: fixed interpolation, learned transposed conv, and sub-pixel conv.

- ``Upsample``: nearest / bilinear / bicubic interpolation, no parameters.
- ``TransposedUpsample``: a learned ``s``-times transposed conv (+ norm + act).
- ``PixelShuffleUpsample`` (Shi et al. 2016, ESPCN): a conv makes ``C·r²`` channels at low
  resolution and ``nn.PixelShuffle`` rearranges them into an ``r``-times larger map;
  ICNR init (Aitken et al. 2017) makes it start as nearest upsampling (no checkerboard).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.activations import get_act
from cvcraft.nn.conv import autopad, transposed_conv
from cvcraft.nn.norm import get_norm

MODES = ("nearest", "bilinear", "bicubic")


class Upsample(nn.Upsample):
    """Interpolating upsampler: (B, C, H, W) -> (B, C, s·H, s·W) with ``mode`` in ``MODES``.

    Bilinear/bicubic use ``align_corners=False`` (pixel centres, as OpenCV/PIL resize do).
    """

    def __init__(self, scale: float = 2, mode: str = "nearest") -> None:
        if mode not in MODES:
            raise ConfigError(f"Upsample mode must be one of {MODES}, got {mode!r}")
        super().__init__(
            scale_factor=scale, mode=mode, align_corners=None if mode == "nearest" else False
        )


class TransposedUpsample(nn.Module):
    """Learned upsampling: ``act(norm(conv_transpose(x)))``, exactly ``scale`` times larger.

    (B, in_ch, H, W) -> (B, out_ch, s·H, s·W). See ``nn.conv.transposed_conv`` for sizes.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        scale: int = 2,
        k: int | None = None,
        norm: str | None = None,
        act: str | None = None,
    ) -> None:
        super().__init__()
        self.conv = transposed_conv(in_ch, out_ch, scale, k, bias=norm is None)
        self.bn = get_norm(norm, out_ch)
        self.act = get_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class PixelShuffleUpsample(nn.Module):
    """Sub-pixel conv upsampler: conv to ``out_ch·r²`` channels, then ``PixelShuffle(r)``.

    PixelShuffle maps channel ``c·r² + i·r + j`` at (y, x) to channel ``c`` at
    (r·y + i, r·x + j). With ``icnr=True`` the conv's r² filters per output channel start
    identical, so the layer initially equals nearest upsampling of one conv.

    (B, in_ch, H, W) -> (B, out_ch, r·H, r·W).
    """

    def __init__(
        self, in_ch: int, out_ch: int, scale: int = 2, k: int = 3, icnr: bool = True
    ) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(in_ch, out_ch * scale * scale, k, padding=autopad(k))
        self.shuffle = nn.PixelShuffle(scale)
        if icnr:
            self._icnr_()

    @torch.no_grad()
    def _icnr_(self) -> None:
        r2 = self.scale**2
        out_ch = self.conv.out_channels // r2
        base = torch.empty(out_ch, *self.conv.weight.shape[1:])
        nn.init.kaiming_normal_(base, nonlinearity="relu")
        # repeat_interleave puts copy j of filter c at index c·r² + j: the r² sub-pixels of c.
        self.conv.weight.copy_(base.repeat_interleave(r2, dim=0))
        self.conv.bias.copy_(self.conv.bias.view(out_ch, r2)[:, :1].expand(out_ch, r2).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))  # (B, out·r², H, W) -> (B, out, rH, rW)
