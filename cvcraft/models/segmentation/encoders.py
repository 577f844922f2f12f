"""Zoo backbones turned into dense-prediction encoders: dilated ResNets and VGG feature stacks.

- ``resnet_backbone``: a classification ResNet from the zoo with ``fc`` removed and, for
  output stride 16 or 8, the stride of the last one or two stages replaced by dilation
  (Chen et al. 2017, DeepLab): the map stays at 1/16 or 1/8 while each 3x3 conv keeps its
  receptive field. The module keeps torchvision's names (``conv1``, ``layer1``...), so a
  segmentation model holding it as ``backbone`` has torchvision's ``backbone.*`` keys.
  Its five feature maps (stem, layer1..layer4; strides 2, 4, 8, 16, 32 at output stride 32)
  come from the ResNet's own ``forward_intermediates`` / ``feature_info``
  (:mod:`cvcraft.models.features`), which ``dilate_resnet`` keeps in step with the dilation.
- ``mobilenet_backbone``: a zoo MobileNetV2 / V3 trunk (classifier and unused last layers
  removed) whose last one or two stride-2 stages are dilated for output stride 16 or 8, as
  torchvision's ``mobilenet_v3_large(dilated=True)`` (DeepLabV3-MobileNetV3). Its five taps
  (strides 2..32) feed the same decoders; ``resnet_backbone`` hands MobileNet names to it,
  so ``DeepLabV3Plus(backbone="mobilenet_v2")`` and ``UNet(encoder="mobilenet_v3_large")``
  work unchanged.
- ``vgg_features``: the ``features`` stack of a zoo VGG (FCN, SegNet).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.resnet import ResNet
from cvcraft.models.classification.vgg import VGG
from cvcraft.models.features import prune_for_features
from cvcraft.models.registry import MODELS, create_model

OUTPUT_STRIDES = (8, 16, 32)
MOBILENETS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


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
    """Zoo ResNet ``name``, classifier removed (``fc`` = identity), dilated to ``output_stride``.

    A MobileNet name (``MOBILENETS``) gives :func:`mobilenet_backbone` instead.
    """
    if MODELS.canonical(name) in MOBILENETS:
        return mobilenet_backbone(name, in_chans, output_stride)
    net = create_model(name, num_classes=0, in_chans=in_chans)
    if not isinstance(net, ResNet):
        raise ConfigError(
            f"backbone {name!r} is not a ResNet or MobileNet; use resnet18/34/50/101/152 "
            f"or {'/'.join(MOBILENETS)}"
        )
    return dilate_resnet(net, output_stride)


def _stride(m: nn.Module) -> int:
    """The stride a MobileNet layer applies (that of its strided conv, else 1)."""
    return max((c.stride[0] for c in m.modules() if isinstance(c, nn.Conv2d)), default=1)


def dilate_mobilenet(net: nn.Module, output_stride: int) -> nn.Module:
    """Trade the stride of a MobileNet's last one (os 16) or two (os 8) stride-2 blocks for
    dilation, in place.

    torchvision's rule (``mobilenet_v3_large(dilated=True)``): once the map has reached
    ``output_stride``, a stride-2 block keeps stride 1 and doubles the dilation, and every
    kxk (k > 1) conv from that block on -- the strided one included -- is dilated, its
    padding ``d (k - 1) / 2`` keeping the map size. ``feature_info`` follows.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ConfigError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    red, dilation = 1, 1
    for layer in net.features:
        s = _stride(layer)
        if s > 1 and red * s > output_stride:
            dilation *= s
            s = 1
        red *= s
        if dilation == 1:
            continue
        for c in layer.modules():
            if isinstance(c, nn.Conv2d) and c.kernel_size[0] > 1:
                k = c.kernel_size[0]
                c.stride = (1, 1)
                c.dilation = (dilation, dilation)
                c.padding = (dilation * (k - 1) // 2,) * 2
    net.output_stride = output_stride
    for info in net.feature_info:
        info["reduction"] = min(info["reduction"], output_stride)
    return net


def mobilenet_backbone(
    name: str = "mobilenet_v2", in_chans: int = 3, output_stride: int = 32
) -> nn.Module:
    """Zoo MobileNet ``name`` as a dense encoder: classifier, pooling and any layer after
    the deepest tap replaced by ``nn.Identity`` (so every parameter gets a gradient),
    dilated to ``output_stride``. Taps at strides 2, 4, 8, 16, 32 (capped at the output
    stride) via ``forward_intermediates``; MobileNetV2's 1280-wide last conv is dropped,
    MobileNetV3's 1x1 conv after the bottlenecks (960 / 576) is the deepest tap."""
    if MODELS.canonical(name) not in MOBILENETS:
        raise ConfigError(f"backbone {name!r} is not a MobileNet; use {', '.join(MOBILENETS)}")
    net = create_model(name, in_chans=in_chans)
    prune_for_features(net, range(len(net.feature_info)))
    return dilate_mobilenet(net, output_stride)


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
    "MOBILENETS",
    "OUTPUT_STRIDES",
    "dilate_mobilenet",
    "dilate_resnet",
    "mobilenet_backbone",
    "resnet_backbone",
    "vgg_features",
]
