"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions").

Key idea: an Inception module runs 1x1, 3x3, 5x5 convolutions and a max-pool side by side
and concatenates them, with 1x1 "reduce" convs in front of the big kernels so the width
stays affordable; two auxiliary classifiers on intermediate layers (after 4a and 4d) inject
extra gradient into the middle of the 22-layer network during training.

Module names, state_dict keys and shapes equal ``torchvision.models.googlenet`` (including
its BatchNorm after every conv, eps 1e-3, and its 3x3 kernel in the "5x5" branch, which
torchvision keeps for checkpoint compatibility), so its checkpoints load with ``strict=True``
and give identical outputs.

Outputs: in train mode with ``aux_logits=True`` the forward returns
``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``, a namedtuple and so a tuple; in
eval mode (or ``aux_logits=False``) it returns the logits tensor. The training loss is
``CE(logits) + 0.3 * (CE(aux1) + CE(aux2))`` (paper, section 5); cvcraft's classify task
applies it to any tuple output, and :meth:`GoogLeNet.training_loss` computes it for custom
loops. The aux heads are dropped from inference entirely (their weights stay in the
state_dict so checkpoints round-trip).

``transform_input=True`` re-maps an input normalised with ImageNet mean/std to the
``(x - 0.5) / 0.5`` scaling Google's original weights were trained with; leave it False
(the default) for models trained here.

Shapes (224 input): stem (B, 192, 28, 28) -> 3a/3b (B, 480, 28, 28) -> pool (B, 480, 14, 14)
-> 4a..4e (B, 832, 14, 14) -> pool (B, 832, 7, 7) -> 5a/5b (B, 1024, 7, 7) -> avg (B, 1024)
-> fc (B, num_classes). Works from 64x64 up (64 -> 2x2 after the last pool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.classification import deep_supervision_loss
from cvcraft.models.registry import register_model
from cvcraft.nn.blocks import InceptionBlock
from cvcraft.nn.conv import ConvBNAct

AUX_LOSS_WEIGHT = 0.3  # weight of each auxiliary classifier's loss (paper, section 5)


class GoogLeNetOutputs(NamedTuple):
    """Train-mode output: main logits first, then the aux heads after 4d and after 4a."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor | None
    aux_logits1: torch.Tensor | None


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> ConvBNAct:
    """conv (no bias, "same" padding) -> BatchNorm (eps 1e-3) -> ReLU; keys ``conv.*``, ``bn.*``."""
    return ConvBNAct(c_in, c_out, kernel, stride, norm_kw={"eps": 1e-3}, act_kw={"inplace": True})


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg-pool to 4x4 -> 1x1 conv 128 -> FC 1024 -> dropout -> FC.

    (B, c_in, H, W) -> (B, num_classes). The adaptive pool replaces the paper's 5x5/3
    average pool so any input size gives the same 128*4*4 = 2048 features.
    """

    def __init__(self, c_in: int, num_classes: int, drop_rate: float = 0.7) -> None:
        super().__init__()
        self.conv = conv_bn(c_in, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4))).flatten(1)  # (B, 2048)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))  # (B, 1024)
        return self.fc2(x)


# (c1, c3_red, c3, c5_red, c5, pool_proj) per Inception module: the paper's Table 1.
_INCEPTION_CFG = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """Inception v1 with optional auxiliary heads.

    Args:
        aux_logits: build the two auxiliary classifiers (used only in train mode).
        transform_input: re-map ImageNet-normalised RGB to (x - 0.5) / 0.5 (for Google's
            original weights); needs ``in_chans == 3``.
        drop_rate: dropout before ``fc`` (0.2 as torchvision; the paper used 0.4).
        aux_drop_rate: dropout inside the aux heads (0.7, paper).
    """

    aux_loss_weight = AUX_LOSS_WEIGHT  # read by the classify task's deep-supervision loss

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        drop_rate: float = 0.2,
        aux_drop_rate: float = 0.7,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ConfigError("GoogLeNet transform_input=True needs in_chans=3 (RGB statistics)")
        self.num_classes = num_classes
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.default_input_size = (in_chans, 224, 224)

        self.conv1 = conv_bn(in_chans, 64, 7, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_bn(64, 64, 1)
        self.conv3 = conv_bn(64, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        c = 192
        for name, cfg in _INCEPTION_CFG.items():
            # torchvision layout: 3x3 in the "5x5" branch, BN eps 1e-3 (see module docstring)
            block = InceptionBlock(c, *cfg, k5=3, norm_kw={"eps": 1e-3})
            self.add_module(f"inception{name}", block)
            c = block.out_channels
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.num_features = c  # 1024
        if aux_logits:
            self.aux1: InceptionAux | None = InceptionAux(512, num_classes, aux_drop_rate)
            self.aux2: InceptionAux | None = InceptionAux(528, num_classes, aux_drop_rate)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # Small truncated-normal weights everywhere (torchvision's recipe for this model).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        # x_c = (raw - mean_c) / std_c, wanted (raw - 0.5) / 0.5
        #     = x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def _features(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Trunk plus aux logits (None unless training with aux heads)."""
        use_aux = self.training and self.aux1 is not None
        aux1 = aux2 = None
        x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, H/8, W/8)
        x = self.inception3b(self.inception3a(x))  # (B, 480, H/8, W/8)
        x = self.inception4a(self.maxpool3(x))  # (B, 512, H/16, W/16)
        if use_aux:
            aux1 = self.aux1(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, H/16, W/16)
        if use_aux:
            aux2 = self.aux2(x)
        x = self.maxpool4(self.inception4e(x))  # (B, 832, H/32, W/32)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, H/32, W/32)
        return x, aux2, aux1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, 1024, H/32, W/32) (ceil-rounded)."""
        return self._features(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1024, h, w) -> (B, num_classes) logits (or pooled features)."""
        x = self.dropout(self.avgpool(x).flatten(1))  # (B, 1024)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        feats, aux2, aux1 = self._features(x)
        logits = self.forward_head(feats)
        if self.training and self.aux1 is not None:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits

    def training_loss(
        self,
        outputs: torch.Tensor | GoogLeNetOutputs,
        target: torch.Tensor,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    ) -> torch.Tensor:
        """``criterion(logits) + 0.3 * (criterion(aux1) + criterion(aux2))``.

        A plain logits tensor (eval mode) gives ``criterion(logits)``.
        """
        return googlenet_loss(outputs, target, criterion)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``fc``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` and the aux heads' last layers for ``num_classes`` (0: fc -> identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for aux in (self.aux1, self.aux2):
            if aux is not None:  # the aux heads must keep producing class logits
                aux.fc2 = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()


def googlenet_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...],
    target: torch.Tensor,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    aux_weight: float = AUX_LOSS_WEIGHT,
) -> torch.Tensor:
    """Main loss plus ``aux_weight`` times each auxiliary head's loss (the classify task's
    own deep-supervision path, ``losses.classification.deep_supervision_loss``)."""
    return deep_supervision_loss(outputs, target, criterion, aux_weight)


@register_model(tv_twin="googlenet")
def googlenet(num_classes: int = 1000, in_chans: int = 3, **kw) -> GoogLeNet:
    """GoogLeNet (Inception v1, torchvision layout, aux heads); 13.0M params (6.6M w/o aux)."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, **kw)
