"""Segmentation networks on MobileNet encoders: DeepLabV3 / DeepLabV3+ and U-Net.

The decoders are the zoo's own (:mod:`.deeplab`, :mod:`.unet`); only the encoder changes,
to a MobileNetV2 / V3 trunk from :func:`.encoders.mobilenet_backbone` (dilated to output
stride 16 for DeepLab, undilated for U-Net). A light encoder for CPUs and phones: the
DeepLabV3+ decoder reads the stride-4 tap (24 channels) and the deepest one (320 for V2,
960 for V3-Large); U-Net reads all five taps (strides 2..32).

``deeplabv3_mobilenet_v3_large`` has torchvision's layout under the converter below
(ASPP rates 12/24/36 at output stride 16); its auxiliary head, when asked for, reads our
stride-16 tap (torchvision's reads the stride-8 one), so only ``aux=False`` files load.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cvcraft.models.registry import register_model
from cvcraft.models.segmentation import deeplab
from cvcraft.models.segmentation.deeplab import DeepLabV3, DeepLabV3Plus
from cvcraft.models.segmentation.unet import UNet
from cvcraft.models.weights import rename_keys

__all__ = [
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3plus_mobilenet_v2",
    "deeplabv3plus_mobilenet_v3_large",
    "from_torchvision_state_dict",
    "unet_mobilenet_v2",
    "unet_mobilenet_v3_large",
]


def from_torchvision_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``deeplabv3_mobilenet_v3_large`` keys -> ours: its backbone is the
    ``features`` list flattened (``backbone.13.block...`` -> ``backbone.features.13...``);
    the head regroups conv + BN as for the ResNet DeepLabV3."""
    return deeplab.from_torchvision_state_dict(
        rename_keys(sd, [(r"^backbone\.(\d+)\.", r"backbone.features.\1.")])
    )


_CFG = {"optimizer": "sgd", "lr": 0.02, "weight_decay": 1e-4}  # as the ResNet DeepLabs


@register_model(
    tv_twin="deeplabv3_mobilenet_v3_large",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def deeplabv3_mobilenet_v3_large(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3:
    """DeepLabV3 on a dilated MobileNetV3-Large (os 16, ASPP 12/24/36); torchvision layout."""
    kw = {"output_stride": 16, "rates": (12, 24, 36), **kw}
    return DeepLabV3(num_classes, in_chans, backbone="mobilenet_v3_large", **kw)


@register_model(default_cfg=_CFG)
def deeplabv3plus_mobilenet_v2(num_classes: int = 21, in_chans: int = 3, **kw) -> DeepLabV3Plus:
    """DeepLabV3+ on a dilated MobileNetV2 (os 16), separable ASPP and decoder."""
    kw = {"separable": True, **kw}
    return DeepLabV3Plus(num_classes, in_chans, backbone="mobilenet_v2", **kw)


@register_model(default_cfg=_CFG)
def deeplabv3plus_mobilenet_v3_large(
    num_classes: int = 21, in_chans: int = 3, **kw
) -> DeepLabV3Plus:
    """DeepLabV3+ on a dilated MobileNetV3-Large (os 16), separable ASPP and decoder."""
    kw = {"separable": True, **kw}
    return DeepLabV3Plus(num_classes, in_chans, backbone="mobilenet_v3_large", **kw)


@register_model()
def unet_mobilenet_v2(num_classes: int = 2, in_chans: int = 3, **kw) -> UNet:
    """U-Net with a MobileNetV2 encoder (taps 16/24/32/96/320) and decoder 256..16."""
    return UNet(num_classes, in_chans, encoder="mobilenet_v2", **kw)


@register_model()
def unet_mobilenet_v3_large(num_classes: int = 2, in_chans: int = 3, **kw) -> UNet:
    """U-Net with a MobileNetV3-Large encoder (taps 16/24/40/112/960) and decoder 256..16."""
    return UNet(num_classes, in_chans, encoder="mobilenet_v3_large", **kw)
