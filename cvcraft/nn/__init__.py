"""Reusable network layers and helpers (floor 2: imports only errors/registry/structures).

Layers are chosen by name where configs name them: ``get_act("silu")``, ``get_norm("groupnorm",
64)``. Transformer layers are in ``cvcraft.nn.transformer``, RepVGG in ``cvcraft.nn.repvgg``.
"""

from cvcraft.nn.activations import ACTIVATIONS, get_act
from cvcraft.nn.attention import CBAM, SqueezeExcite
from cvcraft.nn.blocks import (
    BasicBlock,
    Bottleneck,
    CSPBlock,
    CSPBottleneck,
    DenseBlock,
    DenseLayer,
    InceptionBlock,
)
from cvcraft.nn.cmbn import CmBN
from cvcraft.nn.conv import (
    ConvBNAct,
    DeformConv2d,
    DepthwiseSeparableConv,
    autopad,
    channel_shuffle,
    conv1x1,
    dilated_conv,
    grouped_conv,
    hdc_rates,
    hdc_stack,
    transposed_conv,
)
from cvcraft.nn.drop import Dropout, Dropout2d, DropPath, drop_path
from cvcraft.nn.dropblock import DropBlock, drop_block
from cvcraft.nn.focus import Focus, space_to_depth
from cvcraft.nn.fuse import fuse_conv_bn, fuse_model
from cvcraft.nn.init import init_weights
from cvcraft.nn.norm import NORMS, LayerNorm2d, convert_sync_batchnorm, get_norm
from cvcraft.nn.pool import (
    ASPP,
    SPP,
    SPPF,
    AdaptivePool2d,
    GlobalPool2d,
    SimSPPF,
    SpatialPyramidPool,
)
from cvcraft.nn.repvgg import RepVGGBlock, reparameterize_model
from cvcraft.nn.rfb import RFB
from cvcraft.nn.sam import SpatialAttention
from cvcraft.nn.transformer import (
    CrossAttention,
    LearnedPositionEmbedding,
    MultiHeadSelfAttention,
    TransformerEncoderBlock,
    WindowAttention,
    sinusoidal_position_embedding,
)
from cvcraft.nn.upsample import PixelShuffleUpsample, TransposedUpsample, Upsample

__all__ = [
    "CmBN",
    "DropBlock",
    "Focus",
    "RFB",
    "SpatialAttention",
    "drop_block",
    "space_to_depth",
    "CrossAttention",
    "LearnedPositionEmbedding",
    "MultiHeadSelfAttention",
    "RepVGGBlock",
    "TransformerEncoderBlock",
    "WindowAttention",
    "reparameterize_model",
    "sinusoidal_position_embedding",
    "ACTIVATIONS",
    "ASPP",
    "CBAM",
    "NORMS",
    "SPP",
    "SPPF",
    "AdaptivePool2d",
    "BasicBlock",
    "Bottleneck",
    "CSPBlock",
    "CSPBottleneck",
    "ConvBNAct",
    "DeformConv2d",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparableConv",
    "DropPath",
    "Dropout",
    "Dropout2d",
    "GlobalPool2d",
    "InceptionBlock",
    "LayerNorm2d",
    "PixelShuffleUpsample",
    "SimSPPF",
    "SpatialPyramidPool",
    "SqueezeExcite",
    "TransposedUpsample",
    "Upsample",
    "autopad",
    "channel_shuffle",
    "conv1x1",
    "convert_sync_batchnorm",
    "dilated_conv",
    "drop_path",
    "fuse_conv_bn",
    "fuse_model",
    "get_act",
    "get_norm",
    "grouped_conv",
    "hdc_rates",
    "hdc_stack",
    "init_weights",
    "transposed_conv",
]
