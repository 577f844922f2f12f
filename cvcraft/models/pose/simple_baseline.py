"""SimpleBaseline (Xiao et al. 2018, "Simple Baselines for Human Pose Estimation and
Tracking"): a classification backbone's deepest map, a few 4x4 stride-2 transposed convs,
and a 1x1 conv to one heatmap per keypoint.

Key idea: no multi-scale machinery: deconvolutions alone bring the stride-32 features back
to stride 4, and the heatmaps are regressed with a Gaussian target (``ops.heatmaps``).
Any backbone with ``feature_info`` works; the number of deconvs is what takes its stride to 4
(3 for a ResNet, 0 for a stride-4 CIFAR ResNet).

Shapes (ResNet-18, 256x192 crop): (B, 3, 256, 192) -> layer4 (B, 512, 8, 6) -> 3 x
[deconv 4x4 s2 -> BN -> ReLU] (B, c, 64, 48) -> 1x1 conv (B, K, 64, 48).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import create_model, register_model


class SimpleBaseline(nn.Module):
    """Backbone + deconvolution head -> K heatmaps at stride 4."""

    default_input_size = (3, 256, 192)

    def __init__(
        self,
        num_keypoints: int = 17,
        in_chans: int = 3,
        backbone: str = "resnet18",
        deconv_channels: int = 256,
        out_stride: int = 4,
    ) -> None:
        super().__init__()
        if num_keypoints < 1:
            raise ConfigError(f"num_keypoints must be >= 1, got {num_keypoints}")
        self.backbone = create_model(backbone, in_chans=in_chans, features_only=True,
                                     out_indices=[-1])  # fmt: skip
        info = self.backbone.feature_info[-1]
        reduction, ch = int(info["reduction"]), int(info["num_chs"])
        n_up = math.log2(reduction / out_stride)
        if n_up < 0 or n_up != int(n_up):
            raise ConfigError(
                f"backbone {backbone} has stride {reduction}; SimpleBaseline needs a power-of-two "
                f"multiple of out_stride={out_stride}"
            )
        layers: list[nn.Module] = []
        for _ in range(int(n_up)):
            layers += [
                nn.ConvTranspose2d(ch, deconv_channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            ch = deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, num_keypoints, 1)
        self.stride = out_stride
        self.num_keypoints = num_keypoints
        for m in self.deconv.modules():  # the paper's init for the new layers
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.head.weight, std=0.001)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        f = self.backbone(x)[-1]  # (B, C, H / r, W / r)
        return self.head(self.deconv(f))  # (B, K, H / 4, W / 4)


@register_model(default_cfg={"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0})
def simple_baseline(num_classes: int = 17, in_chans: int = 3, **kw) -> SimpleBaseline:
    """SimpleBaseline with a ResNet-18 backbone (``backbone``, ``deconv_channels`` kwargs);
    ``num_classes`` is the number of keypoints."""
    return SimpleBaseline(num_classes, in_chans, **kw)
