"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation").

Key idea: a contracting path (two 3x3 convs + 2x2 max-pool per level, channels doubling
64 -> 1024) and a symmetric expanding path that upsamples and *concatenates* the encoder
map of the same resolution, so fine localisation from early layers meets context from deep
ones. Departures from the paper, as every modern U-Net does: "same"-padded convs (output =
input size, no cropping) and BatchNorm after each conv (``norm=None`` removes it).

Upsampling: ``bilinear=False`` is the paper's 2x2 "up-convolution" (transposed conv that
halves the channels); ``bilinear=True`` interpolates (no parameters, channels unchanged).
``encoder="resnet34"`` (any zoo ResNet) swaps the contracting path for a ResNet's five
feature maps (the "U-Net with a ResNet encoder" of segmentation_models_pytorch), with
nearest upsampling and ``decoder_channels`` per level; the last decoder block has no skip.

Shapes (paper, base 64, 572 input): (B, C, H, W) -> encoder maps (B, 64·2^i, H/2^i, W/2^i),
i = 0..4 -> decoder (B, 64, H, W) -> 1x1 conv (B, num_classes, H, W). Any H, W >= 2^depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import resnet_backbone
from cvcraft.models.segmentation.heads import check_min_size
from cvcraft.nn.conv import ConvBNAct, transposed_conv

UP_MODES = ("transposed", "bilinear", "nearest")


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-norm-ReLU layers, U-Net's unit per level: (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str | None = "batchnorm") -> None:
        super().__init__(
            ConvBNAct(in_ch, out_ch, 3, norm=norm), ConvBNAct(out_ch, out_ch, 3, norm=norm)
        )


def match_size(x: Tensor, size: Sequence[int], mode: str) -> Tensor:
    """Bring an upsampled map to a skip's (h, w): zero-pad/crop after a transposed conv (the
    odd-size case of a floor-pooled encoder), interpolate otherwise."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "transposed":
        dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
        return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])  # negative pad crops
    return F.interpolate(
        x, size=tuple(size), mode=mode, align_corners=False if mode == "bilinear" else None
    )


class UpBlock(nn.Module):
    """Decoder level: upsample x2, concatenate the skip, DoubleConv.

    (B, in_ch, h, w) + skip (B, skip_ch, 2h, 2w) -> (B, out_ch, 2h, 2w). ``transposed``
    halves the channels before the concat (paper); interpolation keeps them.
    """

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        up: str = "transposed",
        norm: str | None = "batchnorm",
    ) -> None:
        super().__init__()
        if up not in UP_MODES:
            raise ConfigError(f"U-Net up mode must be one of {UP_MODES}, got {up!r}")
        self.mode = up
        self.up = transposed_conv(in_ch, in_ch // 2, 2, k=2) if up == "transposed" else None
        up_ch = in_ch // 2 if up == "transposed" else in_ch
        self.conv = DoubleConv(up_ch + skip_ch, out_ch, norm)

    def forward(self, x: Tensor, skip: Tensor | None, size: Sequence[int]) -> Tensor:
        if self.up is not None:
            x = self.up(x)  # (B, in/2, 2h, 2w)
        x = match_size(x, size, self.mode)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)  # (B, up + skip, H', W')
        return self.conv(x)


class UNet(nn.Module):
    """U-Net with the paper's encoder or a zoo ResNet encoder.

    Args:
        base: channels of the first level (paper 64); level i has ``base·2^i``.
        depth: number of poolings (paper 4).
        bilinear: interpolate instead of the transposed-conv up-convolution.
        norm: norm after each conv ("batchnorm"; ``None`` = the paper's plain convs).
        encoder: ``None`` (paper) or a ResNet name from the zoo ("resnet34").
        decoder_channels: per decoder block, deepest first (ResNet encoder only).
        head_kernel: kernel of the final classifier conv (paper 1; smp uses 3).
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 3,
        base: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        norm: str | None = "batchnorm",
        encoder: str | None = None,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        head_kernel: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 256, 256)
        if encoder is None:
            if depth < 1 or base < 2:
                raise ConfigError(f"UNet needs depth >= 1 and base >= 2, got {depth}, {base}")
            widths = [base * 2**i for i in range(depth + 1)]
            self.backbone = None
            self.inc = DoubleConv(in_chans, widths[0], norm)
            self.downs = nn.ModuleList(DoubleConv(a, b, norm) for a, b in zip(widths, widths[1:]))
            up = "bilinear" if bilinear else "transposed"
            # Deepest first: in = the level below, skip = this level's encoder map.
            ins, skips, outs = widths[:0:-1], widths[-2::-1], widths[-2::-1]
        else:
            self.backbone = resnet_backbone(encoder, in_chans)
            enc = [f["num_chs"] for f in self.backbone.feature_info]  # [64, l1..l4], /2../32
            if len(decoder_channels) != len(enc):
                raise ConfigError(
                    f"UNet decoder_channels needs {len(enc)} entries, got {decoder_channels}"
                )
            up = "bilinear" if bilinear else "nearest"
            ins = [enc[-1], *decoder_channels[:-1]]
            skips = [*enc[-2::-1], 0]  # the last block goes to full resolution, no skip
            outs = list(decoder_channels)
        self.ups = nn.ModuleList(UpBlock(i, s, o, up, norm) for i, s, o in zip(ins, skips, outs))
        self.head = nn.Conv2d(outs[-1], num_classes, head_kernel, padding=head_kernel // 2)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder maps, shallowest first."""
        if self.backbone is not None:
            return self.backbone.forward_intermediates(x)  # strides 2, 4, 8, 16, 32
        check_min_size(x, 2 ** len(self.downs), "unet")
        feats = [self.inc(x)]  # (B, base, H, W)
        for down in self.downs:
            feats.append(down(F.max_pool2d(feats[-1], 2)))  # (B, base·2^i, H/2^i, W/2^i)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encode(x)
        y = feats[-1]
        skips: list[Tensor | None] = feats[-2::-1]
        if self.backbone is not None:
            skips = [*skips, None]
        for block, skip in zip(self.ups, skips):
            size = skip.shape[-2:] if skip is not None else x.shape[-2:]
            y = block(y, skip, size)
        return self.head(y)  # (B, num_classes, H, W)


@register_model()
def unet(num_classes: int = 2, in_chans: int = 3, **kw) -> UNet:
    """U-Net (paper widths 64..1024; ``base``, ``depth``, ``bilinear``, ``encoder`` kwargs)."""
    return UNet(num_classes, in_chans, **kw)


@register_model()
def unet_resnet34(num_classes: int = 2, in_chans: int = 3, **kw) -> UNet:
    """U-Net with a ResNet-34 encoder and decoder (256, 128, 64, 32, 16) (smp's Unet default)."""
    return UNet(num_classes, in_chans, encoder="resnet34", **kw)
