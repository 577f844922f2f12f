"""Inception v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision"), with the factorised convolutions introduced there (the "Inception v2" blocks).

Key idea: keep GoogLeNet's parallel branches but make every big kernel cheaper by
factorising it -- a 5x5 becomes two stacked 3x3s (block A, 28% fewer weights for the same
receptive field), an n x n becomes 1 x n then n x 1 (block C at 17x17, n = 7), and the
coarsest blocks (E) split the 3x3 into parallel 1x3 / 3x1 outputs to widen the
representation. Grid reduction (blocks B and D) runs a stride-2 conv branch beside a
stride-2 max-pool and concatenates them, so the width grows as the map shrinks without a
representational bottleneck. One auxiliary classifier on the 17x17 map regularises training.

Module names, state_dict keys (``Mixed_6e.branch7x7dbl_3.conv.weight``, ``AuxLogits.fc.*``)
and shapes equal ``torchvision.models.inception_v3``, so its checkpoints load with
``strict=True`` (torchvision's ImageNet weights also expect ``transform_input``, which we
do not implement: feed them inputs normalised with mean = std = 0.5).

Outputs: in train mode with ``aux_logits=True`` the forward returns
``InceptionOutputs(logits, aux_logits)``; otherwise the logits tensor. The training loss is
``CE(logits) + 0.4 * CE(aux)`` (torchvision's reference recipe), which the classify task's
deep-supervision loss applies to the tuple via ``aux_loss_weight``.

Shapes (299 input, no padding in the stem): stem (B, 192, 35, 35) -> 3 x A (B, 288, 35, 35)
-> B (B, 768, 17, 17) -> 4 x C (B, 768, 17, 17) -> D (B, 1280, 8, 8) -> 2 x E
(B, 2048, 8, 8) -> global average -> dropout -> fc (B, num_classes). The trunk works from
75x75; the aux head needs the 17x17 map (>= 299 input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.features import feature_entry, stage_features
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import ConvBNAct

__all__ = ["Inception3", "InceptionOutputs", "inception_v3"]

AUX_LOSS_WEIGHT = 0.4


class InceptionOutputs(NamedTuple):
    """Train-mode output: main logits, then the auxiliary head's logits."""

    logits: torch.Tensor
    aux_logits: torch.Tensor | None


def bc(
    c_in: int, c_out: int, k: int | tuple[int, int], s: int = 1, p: int | tuple[int, int] = 0
) -> ConvBNAct:
    """conv (no bias) -> BN (eps 1e-3) -> ReLU; keys ``conv.*``, ``bn.*`` (torchvision's)."""
    return ConvBNAct(c_in, c_out, k, s, p, norm_kw={"eps": 1e-3}, act_kw={"inplace": True})


def _pool_branch(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1)  # zeros count in the average (torchvision)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 (the factorised 5x5) | avg-pool-1x1.
    (B, c_in, H, W) -> (B, 224 + pool_features, H, W)."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = bc(c_in, 64, 1)
        self.branch5x5_1 = bc(c_in, 48, 1)
        self.branch5x5_2 = bc(48, 64, 5, p=2)
        self.branch3x3dbl_1 = bc(c_in, 64, 1)
        self.branch3x3dbl_2 = bc(64, 96, 3, p=1)
        self.branch3x3dbl_3 = bc(96, 96, 3, p=1)
        self.branch_pool = bc(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_pool_branch(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | max-pool 3x3/2, concatenated.
    (B, c_in, H, W) -> (B, c_in + 480, (H-3)/2+1, (W-3)/2+1)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = bc(c_in, 384, 3, s=2)
        self.branch3x3dbl_1 = bc(c_in, 64, 1)
        self.branch3x3dbl_2 = bc(64, 96, 3, p=1)
        self.branch3x3dbl_3 = bc(96, 96, 3, s=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with 7x7 factorised into 1x7 then 7x1: 1x1 | 1x1-1x7-7x1 |
    1x1-7x1-1x7-7x1-1x7 | avg-pool-1x1. (B, c_in, H, W) -> (B, 768, H, W)."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = bc(c_in, 192, 1)
        self.branch7x7_1 = bc(c_in, c7, 1)
        self.branch7x7_2 = bc(c7, c7, (1, 7), p=(0, 3))
        self.branch7x7_3 = bc(c7, 192, (7, 1), p=(3, 0))
        self.branch7x7dbl_1 = bc(c_in, c7, 1)
        self.branch7x7dbl_2 = bc(c7, c7, (7, 1), p=(3, 0))
        self.branch7x7dbl_3 = bc(c7, c7, (1, 7), p=(0, 3))
        self.branch7x7dbl_4 = bc(c7, c7, (7, 1), p=(3, 0))
        self.branch7x7dbl_5 = bc(c7, 192, (1, 7), p=(0, 3))
        self.branch_pool = bc(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool_branch(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool 3x3/2.
    (B, c_in, H, W) -> (B, c_in + 512, (H-3)/2+1, (W-3)/2+1)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = bc(c_in, 192, 1)
        self.branch3x3_2 = bc(192, 320, 3, s=2)
        self.branch7x7x3_1 = bc(c_in, 192, 1)
        self.branch7x7x3_2 = bc(192, 192, (1, 7), p=(0, 3))
        self.branch7x7x3_3 = bc(192, 192, (7, 1), p=(3, 0))
        self.branch7x7x3_4 = bc(192, 192, 3, s=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded filter banks: 1x1 | 1x1-[1x3, 3x1] | 1x1-3x3-[1x3, 3x1] |
    avg-pool-1x1, the bracketed pairs side by side. (B, c_in, H, W) -> (B, 2048, H, W)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch1x1 = bc(c_in, 320, 1)
        self.branch3x3_1 = bc(c_in, 384, 1)
        self.branch3x3_2a = bc(384, 384, (1, 3), p=(0, 1))
        self.branch3x3_2b = bc(384, 384, (3, 1), p=(1, 0))
        self.branch3x3dbl_1 = bc(c_in, 448, 1)
        self.branch3x3dbl_2 = bc(448, 384, 3, p=1)
        self.branch3x3dbl_3a = bc(384, 384, (1, 3), p=(0, 1))
        self.branch3x3dbl_3b = bc(384, 384, (3, 1), p=(1, 0))
        self.branch_pool = bc(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)  # (B, 768, H, W)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)  # (B, 768, H, W)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(_pool_branch(x))], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 map: avg-pool 5x5/3 (-> 5x5) -> 1x1 conv 128 ->
    5x5 conv 768 (-> 1x1) -> fc. (B, c_in, 17, 17) -> (B, num_classes)."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = bc(c_in, 128, 1)
        self.conv1 = bc(128, 768, 5)
        self.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 17:
            raise ConfigError(
                f"Inception v3's auxiliary head needs a map of at least 17x17 (input >= 299), "
                f"got {tuple(x.shape[-2:])}; use larger images or aux_logits=False"
            )
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))  # (B, 768, h, w)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Inception3(nn.Module):
    """Inception v3.

    Args:
        aux_logits: build the auxiliary classifier (it runs in train mode only).
        drop_rate: dropout before ``fc`` (0.5).

    ``feature_info`` taps (timm's): ``Conv2d_2b_3x3`` (/2), ``Conv2d_4a_3x3`` (/4),
    ``Mixed_5d`` (/8), ``Mixed_6e`` (/16), ``Mixed_7c`` (/32); the maps are a few pixels
    smaller than input / reduction since the stem convs are unpadded.
    """

    aux_loss_weight = AUX_LOSS_WEIGHT  # read by the classify task's deep-supervision loss
    head_names = ("AuxLogits", "avgpool", "dropout", "fc")

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (in_chans, 299, 299)
        self.Conv2d_1a_3x3 = bc(in_chans, 32, 3, s=2)
        self.Conv2d_2a_3x3 = bc(32, 32, 3)
        self.Conv2d_2b_3x3 = bc(32, 64, 3, p=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = bc(64, 80, 1)
        self.Conv2d_4a_3x3 = bc(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)  # (B, 256, 35, 35)
        self.Mixed_5c = InceptionA(256, pool_features=64)  # (B, 288, 35, 35)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)  # (B, 768, 17, 17)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        # without aux: an Identity (no keys, like torchvision's None, but prunable by name)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else nn.Identity()
        self.Mixed_7a = InceptionD(768)  # (B, 1280, 8, 8)
        self.Mixed_7b = InceptionE(1280)  # (B, 2048, 8, 8)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.num_features = 2048
        self.fc = nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()
        self._stage_names = [
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
            "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
            "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
        ]  # fmt: skip
        self.feature_info = [
            feature_entry(64, 2, "Conv2d_2b_3x3"),
            feature_entry(192, 4, "Conv2d_4a_3x3"),
            feature_entry(288, 8, "Mixed_5d"),
            feature_entry(768, 16, "Mixed_6e"),
            feature_entry(2048, 32, "Mixed_7c"),
        ]
        # torchvision's recipe: truncated normal, std 0.1 (aux conv1 0.01, aux fc 0.001)
        for name, m in self.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = {"AuxLogits.conv1.conv": 0.01, "AuxLogits.fc": 0.001}.get(name, 0.1)
                nn.init.trunc_normal_(m.weight, std=std, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk in order: stem convs and pools, ``Mixed_5b`` .. ``Mixed_7c``."""
        return [(n, getattr(self, n)) for n in self._stage_names]

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:
        """Maps at ``feature_info[indices]`` (default all): 64, 192, 288, 768, 2048 channels."""
        return stage_features(self, x, indices)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, in_chans, H, W) -> (B, 2048, h, w) and the aux logits (train mode only)."""
        aux = None
        use_aux = self.training and isinstance(self.AuxLogits, InceptionAux)
        for name, m in self.feature_stages():
            x = m(x)
            if use_aux and name == "Mixed_6e":
                aux = self.AuxLogits(x)  # (B, num_classes) from the 17x17 map
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 2048, h, w); 8x8 at 299."""
        return self._trunk(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average -> dropout -> fc: (B, 2048, h, w) -> (B, num_classes)."""
        x = self.dropout(self.avgpool(x).flatten(1))  # (B, 2048)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        feats, aux = self._trunk(x)
        logits = self.forward_head(feats)
        if self.training and isinstance(self.AuxLogits, InceptionAux):
            return InceptionOutputs(logits, aux)
        return logits

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` and the aux head's ``fc`` for ``num_classes`` (0: identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.AuxLogits, InceptionAux):
            self.AuxLogits.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()


# torchvision's reference recipe: SGD lr 0.1 at batch 256, wd 1e-4 (the paper used RMSProp,
# lr 0.045 at batch 32, decay 0.9, eps 1.0).
_CFG = {"input_size": (3, 299, 299), "optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4}


@register_model(tv_twin="inception_v3", default_cfg=_CFG)
def inception_v3(num_classes: int = 1000, in_chans: int = 3, **kw) -> Inception3:
    """Inception v3 (torchvision layout, aux head); 27.2M params (23.8M without aux)."""
    return Inception3(num_classes=num_classes, in_chans=in_chans, **kw)
