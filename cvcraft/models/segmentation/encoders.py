"""Zoo backbones turned into dense-prediction encoders: dilated ResNets and VGG feature stacks.

- ``resnet_backbone``: a classification ResNet from the zoo with ``fc`` removed and, for
  output stride 16 or 8, the stride of the last one or two stages replaced by dilation
  (Chen et al. 2017, DeepLab): the map stays at 1/16 or 1/8 while each 3x3 conv keeps its
  receptive field. The module keeps torchvision's names (``conv1``, ``layer1``...), so a
  segmentation model holding it as ``backbone`` has torchvision's ``backbone.*`` keys.
  Its five feature maps (stem, layer1..layer4; strides 2, 4, 8, 16, 32 at output stride 32)
  come from the ResNet's own ``forward_intermediates`` / ``feature_info``
  (:mod:`cvcraft.models.features`), which ``dilate_resnet`` keeps in step with the dilation.
- ``vgg_features``: the ``features`` stack of a zoo VGG (FCN, SegNet).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.resnet import ResNet
from cvcraft.models.classification.vgg import VGG
from cvcraft.models.registry import create_model

OUTPUT_STRIDES = (8, 16, 32)


def dilate_resnet(net: ResNet, output_stride: int) -> ResNet:
    """Replace the stride of ``layer4`` (os 16) or ``layer3`` + ``layer4`` (os 8) by dilation.

    Matches torchvision's ``replace_stride_with_dilation``: in a dilated stage the 3x3 conv
    that carried the stride keeps the *previous* dilation (stride 1), every other 3x3 conv
    gets the stage's dilation (doubled per dilated stage); the shortcut's 1x1 conv loses its
    stride. Works for Bottleneck and BasicBlock stages. Modifies ``net`` in place.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ConfigError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    n_dilated = {32: 0, 16: 1, 8: 2}[output_stride]
    if n_dilated > net.num_stages - 1:
        raise ConfigError(f"output_stride {output_stride} needs a ResNet with >= 4 stages")
    dilation = 1
    for i in range(net.num_stages - n_dilated + 1, net.num_stages + 1):
        prev, dilation = dilation, dilation * 2
        for m in getattr(net, f"layer{i}").modules():
            if not isinstance(m, nn.Conv2d):
                continue
            if m.kernel_size == (1, 1):
                m.stride = (1, 1)  # shortcut projection
            elif m.stride == (2, 2):
                m.stride, m.dilation, m.padding = (1, 1), (prev, prev), (prev, prev)
            else:
                m.dilation, m.padding = (dilation, dilation), (dilation, dilation)
    net.output_stride = output_stride
    for info in net.feature_info:  # dilated stages stay at the output stride
        info["reduction"] = min(info["reduction"], output_stride)
    return net


def resnet_backbone(name: str = "resnet50", in_chans: int = 3, output_stride: int = 32) -> ResNet:
    """Zoo ResNet ``name``, classifier removed (``fc`` = identity), dilated to ``output_stride``."""
    net = create_model(name, num_classes=0, in_chans=in_chans)
    if not isinstance(net, ResNet):
        raise ConfigError(f"backbone {name!r} is not a ResNet; use resnet18/34/50/101/152")
    return dilate_resnet(net, output_stride)


def vgg_features(
    cfg: str | list[int | str] = "D", in_chans: int = 3, batch_norm: bool = False
) -> nn.Sequential:
    """The conv/pool stack (``features``) of a zoo VGG; ``cfg`` as in ``VGG`` ("D" = VGG-16)."""
    # Build on the meta device so VGG's 120M-parameter classifier is never allocated, then
    # materialise and initialise only the features with VGG's own recipe.
    with torch.device("meta"):
        vgg = VGG(cfg, num_classes=0, in_chans=in_chans, batch_norm=batch_norm)
    vgg.classifier = nn.Sequential()
    vgg.to_empty(device="cpu")
    vgg._init_weights()
    for m in vgg.modules():  # buffers are not parameters: start the BN statistics afresh
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    return vgg.features


__all__ = [
    "OUTPUT_STRIDES",
    "dilate_resnet",
    "resnet_backbone",
    "vgg_features",
]
