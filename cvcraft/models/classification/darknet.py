"""Darknet-53 (Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement") and its CSP form.

Key idea: a plain stack of 3x3 stride-2 downsampling convs, each followed by ``n`` residual
units (1x1 halving the channels, 3x3 restoring them, plus the input), with BatchNorm and
LeakyReLU(0.1) everywhere. Stages (1, 2, 8, 8, 4) at 64..1024 channels make 52 convs + the
classifier's fc = 53 layers. ``csp=True`` replaces each stage's residual units by one Cross
Stage Partial block (Wang et al. 2020, CSPNet; YOLOv5's C3 from ``cvcraft.nn.CSPBlock``),
which halves the stage's compute while keeping its depth. (Our ``darknet53`` equals timm's
in layout and parameter count, 41.6M; our ``cspdarknet53`` uses the C3 form, 27.3M, not
timm's CSPNet-paper variant, 27.6M.)

The class is a classifier (registered as ``darknet53`` / ``cspdarknet53``, with avg-pool +
fc) *and* the YOLOv3 trunk: ``forward_stages`` returns the last three stage outputs (C3, C4,
C5 at strides 8, 16, 32) the detector's FPN consumes. Because the detector holds exactly this
module as ``backbone``, a ``darknet53`` classification checkpoint loads into a YOLOv3 backbone
key for key (``backbone_init.load_backbone_state``).

``width_mult`` / ``depth_mult`` scale channels and residual counts (YOLOv5-style compound
scaling) so a small variant trains on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.blocks import CSPBlock
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.init import init_weights

__all__ = [
    "Darknet",
    "DarknetResidual",
    "cspdarknet53",
    "darknet53",
    "darknet_conv",
    "scale_channels",
]

DARKNET53_DEPTHS = (1, 2, 8, 8, 4)
DARKNET53_WIDTHS = (64, 128, 256, 512, 1024)
LEAKY = {"negative_slope": 0.1}


def scale_channels(c: int, width_mult: float, divisor: int = 8) -> int:
    """``c * width_mult`` rounded up to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(math.ceil(c * width_mult / divisor) * divisor))


def darknet_conv(in_ch: int, out_ch: int, k: int, s: int = 1, act: str = "leaky_relu") -> ConvBNAct:
    """Darknet's conv unit: conv (no bias) + BN + LeakyReLU(0.1) (or another ``act``)."""
    return ConvBNAct(in_ch, out_ch, k, s, act=act, act_kw=LEAKY if act == "leaky_relu" else None)


class DarknetResidual(nn.Module):
    """Darknet's residual unit: ``x + conv3x3(conv1x1(x))`` with the 1x1 at half width.

    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, ch: int, act: str = "leaky_relu") -> None:
        super().__init__()
        self.cv1 = darknet_conv(ch, ch // 2, 1, act=act)
        self.cv2 = darknet_conv(ch // 2, ch, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class Darknet(nn.Module):
    """Darknet-53 (or CSPDarknet-53) classifier / detection trunk.

    Args:
        depths, widths: residual units and output channels of the five stride-2 stages.
        width_mult, depth_mult: compound scaling of channels (rounded to multiples of 8) and
            unit counts (rounded, at least 1).
        csp: use one ``CSPBlock`` per stage instead of plain residual units.
        act: activation name (``"leaky_relu"`` is the paper's, slope 0.1).

    Shapes (256 input): stem (B, w0/2, 256, 256) -> stages at strides 2..32 -> C5
    (B, widths[-1], 8, 8) -> avgpool + fc (B, num_classes). ``feature_info`` taps (timm's):
    ``stem`` (/1), ``stages.0`` (/2) .. ``stages.4`` (/32).
    """

    head_names = ("drop", "avgpool", "fc")

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        depths: Sequence[int] = DARKNET53_DEPTHS,
        widths: Sequence[int] = DARKNET53_WIDTHS,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        csp: bool = False,
        act: str = "leaky_relu",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(depths) != len(widths) or len(depths) < 3:
            raise ConfigError(
                f"Darknet: depths {tuple(depths)} and widths {tuple(widths)} need the same "
                "length, at least 3 (the detector reads the last three stages)"
            )
        if width_mult <= 0 or depth_mult <= 0:
            raise ConfigError(
                f"Darknet: width_mult={width_mult} and depth_mult={depth_mult} must be positive"
            )
        widths = [scale_channels(w, width_mult) for w in widths]
        depths = [max(1, round(d * depth_mult)) for d in depths]
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 256, 256)
        self.stem = darknet_conv(in_chans, widths[0] // 2, 3, act=act)  # (B, w0/2, H, W)
        in_ch = widths[0] // 2
        stages = []
        self.feature_info = [feature_entry(in_ch, 1, "stem")]
        for i, (n, w) in enumerate(zip(depths, widths)):
            down = darknet_conv(in_ch, w, 3, 2, act=act)  # halves H, W
            if csp:
                body: nn.Module = CSPBlock(w, w, n=n, act=act)
            else:
                body = nn.Sequential(*(DarknetResidual(w, act) for _ in range(n)))
            stages.append(nn.Sequential(down, body))
            in_ch = w
            self.feature_info.append(feature_entry(w, 2 ** (i + 1), f"stages.{i}"))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(widths)
        self.num_features = in_ch
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self, "kaiming", nonlinearity="leaky_relu")

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """``stem``, ``stages.0`` .. ``stages.K-1`` in order."""
        return [("stem", self.stem)] + [(f"stages.{i}", s) for i, s in enumerate(self.stages)]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): stem (B, w0/2, H, W), then
        stage i (B, widths[i], H / 2^(i+1), W / 2^(i+1))."""
        return stage_features(self, x, indices)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> every stage's output, strides 2, 4, 8, 16, 32 (for 5 stages)."""
        return self.forward_intermediates(x, range(1, len(self.feature_info)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> last stage (B, num_features, H/32, W/32)."""
        return self.forward_stages(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x)).flatten(1)  # (B, num_features)
        return self.fc(self.drop(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh layer for ``num_classes`` (0 -> identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


# darknet53.cfg: SGD lr 0.1, weight decay 5e-4.
_CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4}


@register_model(default_cfg=_CFG)
def darknet53(num_classes: int = 1000, in_chans: int = 3, **kw) -> Darknet:
    """Darknet-53 classifier (YOLOv3's trunk): 5 stages of (1, 2, 8, 8, 4) residual units."""
    return Darknet(num_classes=num_classes, in_chans=in_chans, **kw)


@register_model(default_cfg=_CFG)
def cspdarknet53(num_classes: int = 1000, in_chans: int = 3, **kw) -> Darknet:
    """CSPDarknet-53 classifier: Darknet-53 with a CSP (C3) block per stage."""
    return Darknet(num_classes=num_classes, in_chans=in_chans, csp=True, **kw)
