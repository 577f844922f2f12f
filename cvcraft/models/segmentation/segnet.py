"""SegNet (Badrinarayanan, Kendall & Cipolla 2017, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation").

Key idea: the encoder is VGG-16's 13 conv layers (with BatchNorm); each 2x2 max-pool
remembers the argmax position of every window, and the mirrored decoder *unpools* by putting
each value back at that position (a sparse map) before dense 3x3 convs fill it in. Boundary
detail is recovered without storing encoder maps (as U-Net does) or learning to upsample
(as FCN does): only the indices are kept.

Odd sizes work: each unpool is told the pre-pool size. Shapes (VGG-16): (B, 3, H, W) ->
5 x [convs, pool] -> (B, 512, H/32, W/32) -> 5 x [unpool, convs] -> (B, 64, H, W) ->
1x1 conv (B, K, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.models.segmentation.encoders import vgg_features
from cvcraft.models.segmentation.heads import check_min_size, is_exporting
from cvcraft.nn.conv import ConvBNAct


class SegNet(nn.Module):
    """VGG-BN encoder with pooling indices + mirrored decoder with max-unpooling.

    Args:
        cfg: VGG layer table ("D" = VGG-16's 13 convs); widths and "M" pools.

    ``encoder`` keeps the zoo ``vgg16_bn`` ``features`` keys, so VGG weights load into it.
    """

    def __init__(
        self, num_classes: int = 21, in_chans: int = 3, cfg: str | list[int | str] = "D"
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 360, 480)
        self.encoder = vgg_features(cfg, in_chans, batch_norm=True)
        # Encoder stages = runs of conv widths between pools, e.g. [[64, 64], [128, 128], ...].
        stages: list[list[int]] = [[]]
        self.pool_at: list[int] = []
        for i, m in enumerate(self.encoder):
            if isinstance(m, nn.Conv2d):
                stages[-1].append(m.out_channels)
            elif isinstance(m, nn.MaxPool2d):
                self.pool_at.append(i)
                stages.append([])
        if stages[-1] or not self.pool_at:
            raise ConfigError("SegNet cfg must end with a pool ('M') and contain at least one")
        stages.pop()
        # Decoder stage mirrors encoder stage s: its convs keep the width, the last one
        # narrows to the previous stage's width (the first stage's stays, then the classifier).
        decoder = []
        for s in range(len(stages) - 1, -1, -1):
            widths = stages[s]
            out_last = stages[s - 1][-1] if s > 0 else widths[0]
            outs = [*widths[:-1], out_last]
            ins = [widths[-1], *outs[:-1]]
            decoder.append(nn.Sequential(*(ConvBNAct(i, o, 3) for i, o in zip(ins, outs))))
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(stages[0][0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_min_size(x, 2 ** len(self.pool_at), "segnet")
        indices, sizes, start = [], [], 0
        for p in self.pool_at:
            x = self.encoder[start:p](x)  # convs of this stage
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)  # (B, C, h/2, w/2) + argmax
            indices.append(idx)
            start = p + 1
        for block, idx, size in zip(self.decoder, reversed(indices), reversed(sizes)):
            if is_exporting():
                x = unpool_scatter(x, idx, size)  # ONNX has no exporter for max_unpool2d
            else:
                x = F.max_unpool2d(x, idx, 2, 2, output_size=size)  # sparse (B, C, h, w)
            x = block(x)
        return self.head(x)  # (B, K, H, W)


def unpool_scatter(x: Tensor, indices: Tensor, size: Sequence[int]) -> Tensor:
    """Max-unpooling as a scatter: each value goes to its argmax position (``indices`` from
    ``max_pool2d(..., return_indices=True)`` are flat per-plane offsets), zeros elsewhere.

    Equals ``F.max_unpool2d`` (tested); used under export because torch's TorchScript ONNX
    exporter has no symbolic for max_unpool2d, while scatter exports as ScatterElements.
    (B, C, h, w) + indices -> (B, C, *size).
    """
    b, c = x.shape[:2]
    flat = x.new_zeros(b, c, size[0] * size[1])
    flat = flat.scatter(2, indices.flatten(2), x.flatten(2))
    return flat.view(b, c, size[0], size[1])


@register_model()
def segnet(num_classes: int = 21, in_chans: int = 3, **kw) -> SegNet:
    """SegNet with the VGG-16-BN encoder (13 convs) and its mirrored decoder."""
    return SegNet(num_classes, in_chans, **kw)
