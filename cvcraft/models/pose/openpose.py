"""OpenPose (Cao et al. 2017, "Realtime Multi-Person 2D Pose Estimation using Part Affinity
Fields"), small: a bottom-up model that finds every person's keypoints in one pass.

Key idea: two branches predict, for the whole image, one heatmap per keypoint type (where
any person's elbow is) and one 2-D part affinity field per limb (which way the limb points
there); stage t > 1 sees the image features plus stage t - 1's maps and refines both, and
every stage is supervised (intermediate supervision). People are then assembled from the
maps by ``ops.paf_grouping`` (no person detector).

Backbone (here): a small VGG-like trunk to stride 4 (the paper: VGG-19's first 10 layers to
stride 8). Refinement stages use dilated 3x3 convs in place of the paper's 7x7 ones (the
same reach at a third of the cost).

Shapes (width c, K keypoints, L limbs): (B, 3, H, W) -> trunk (B, c, H/4, W/4) -> per stage
[heatmaps (B, K, H/4, W/4), fields (B, 2L, H/4, W/4)]. In training forward returns both lists
(one entry per stage, for intermediate supervision); in eval mode only the last stage's
(heatmaps, fields), what deployment and ONNX export need.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import ConvBNAct


def _branch(in_ch: int, width: int, out_ch: int, convs: int, dilation: int) -> nn.Sequential:
    """``convs`` 3x3 conv-BN-ReLU layers (dilated), a 1x1 conv-ReLU and a 1x1 output conv."""
    layers = [ConvBNAct(in_ch if i == 0 else width, width, 3, d=dilation) for i in range(convs)]
    head = nn.Conv2d(width, out_ch, 1)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, ConvBNAct(width, width, 1), head)


class OpenPose(nn.Module):
    """Trunk + ``stages`` two-branch stages; see the module doc."""

    default_input_size = (3, 128, 128)
    stride = 4
    bottom_up = True

    def __init__(
        self,
        num_keypoints: int = 17,
        num_limbs: int = 19,
        in_chans: int = 3,
        width: int = 64,
        stages: int = 3,
        stage_convs: int = 3,
    ) -> None:
        super().__init__()
        if num_keypoints < 1 or num_limbs < 1 or stages < 1:
            raise ConfigError(
                f"OpenPose needs num_keypoints, num_limbs and stages >= 1, got "
                f"{num_keypoints}, {num_limbs}, {stages}"
            )
        half = max(width // 2, 8)
        self.trunk = nn.Sequential(
            ConvBNAct(in_chans, half, 3, 2), ConvBNAct(half, half, 3),  # stride 2
            ConvBNAct(half, width, 3, 2), ConvBNAct(width, width, 3),  # stride 4
            ConvBNAct(width, width, 3),
        )  # fmt: skip
        k, f = num_keypoints, 2 * num_limbs
        self.heat = nn.ModuleList()
        self.paf = nn.ModuleList()
        for t in range(stages):
            in_ch = width if t == 0 else width + k + f
            dil = 1 if t == 0 else 2
            self.heat.append(_branch(in_ch, width, k, stage_convs, dil))
            self.paf.append(_branch(in_ch, width, f, stage_convs, dil))
        self.num_keypoints, self.num_limbs = k, num_limbs

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]] | tuple[Tensor, Tensor]:
        feat = self.trunk(x)  # (B, c, H/4, W/4)
        heats: list[Tensor] = []
        pafs: list[Tensor] = []
        inp = feat
        for heat, paf in zip(self.heat, self.paf):
            heats.append(heat(inp))  # (B, K, H/4, W/4)
            pafs.append(paf(inp))  # (B, 2L, H/4, W/4)
            inp = torch.cat([feat, heats[-1], pafs[-1]], 1)
        if not self.training:
            return heats[-1], pafs[-1]
        return heats, pafs


@register_model(default_cfg={"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                             "bottom_up": True})  # fmt: skip
def openpose_small(num_classes: int = 17, in_chans: int = 3, num_limbs: int = 19, **kw) -> OpenPose:
    """Small OpenPose (width 64, 3 stages; ``width``, ``stages``, ``stage_convs`` kwargs);
    ``num_classes`` is the number of keypoints, ``num_limbs`` the skeleton's limb count."""
    return OpenPose(num_classes, num_limbs, in_chans, **kw)
