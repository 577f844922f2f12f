"""DenseFuse-style fusion network (Li & Wu 2019, "DenseFuse: A Fusion Approach to Infrared
and Visible Images"), trained end to end.

Key idea: one shared encoder (a 3x3 conv, then a dense block whose every layer sees the
concatenation of all earlier maps) turns each source into a deep feature map; a fusion
layer merges the two maps; a plain conv decoder turns the merged map back into an image.
Fusion strategies: ``add`` (phi = phi_ir + phi_vis), ``l1`` (the paper's L1-norm rule:
activity C_k = 3x3 box mean of ||phi_k||_1 over channels, phi = sum_k C_k phi_k / sum_k C_k)
and ``concat`` (a learned 1x1 conv over [phi_ir, phi_vis], the end-to-end variant).
Two ways to train it: as the paper, an auto-encoder on single images (``reconstruct``,
``losses.fusion.ReconstructionLoss``; no skip) whose fusion layer (``add`` or ``l1``, no
weights) is used only at test time, where one trained auto-encoder serves either rule
(``forward(x, strategy=...)``); or end to end on pairs with the fusion loss
(``losses.fusion.FusionLoss``), usually with the learned ``concat`` layer.

With ``skip=True`` (default) the decoder output is added to logit((ir + vis) / 2) before the
sigmoid, and its last conv starts at zero: the untrained network is the pixel average, and
training learns the correction (a short run then starts from a sane image, not grey).

Shapes (width w = 16): (B, 2, H, W) -> per source (B, 1, H, W) -> encoder (B, 4w, H, W)
-> fused (B, 4w, H, W) -> decoder 4w -> 4w -> 2w -> w -> 1 [+ logit of the mean] ->
sigmoid (B, 1, H, W).
No normalization layers (fused images are full-resolution, batches small and sizes vary)
and no down-sampling, so any H, W works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import ConvBNAct

STRATEGIES = ("add", "l1", "concat")


def _conv(i: int, o: int, act: str | None = "relu") -> ConvBNAct:
    return ConvBNAct(i, o, 3, act=act, norm=None)


class DenseBlock(nn.Module):
    """``layers`` 3x3 conv-ReLU layers, each fed the concatenation of the block input and
    every earlier layer's output: (B, c, H, W) -> (B, c + layers * growth, H, W)."""

    def __init__(self, in_ch: int, growth: int, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_conv(in_ch + i * growth, growth) for i in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


def l1_norm_fusion(a: Tensor, b: Tensor, window: int = 3) -> Tensor:
    """DenseFuse's L1-norm rule: weights from the window-averaged channel L1 norm of each
    map, w_k = C_k / (C_a + C_b) (equal weights where both are 0). (B, C, H, W) x 2 -> same."""
    acts = [F.avg_pool2d(x.abs().sum(1, keepdim=True), window, 1, window // 2,
                         count_include_pad=False) for x in (a, b)]  # fmt: skip
    total = acts[0] + acts[1]
    wa = torch.where(total > 0, acts[0] / total.clamp_min(1e-12), torch.full_like(total, 0.5))
    return wa * a + (1 - wa) * b


class DenseFuse(nn.Module):
    """Shared dense encoder, a fusion layer (``strategy``), conv decoder; see the module doc."""

    default_input_size = (2, 256, 256)

    def __init__(
        self, in_chans: int = 2, width: int = 16, strategy: str = "concat", skip: bool = True
    ) -> None:
        super().__init__()
        if in_chans != 2:
            raise ConfigError(
                f"DenseFuse fuses two single-channel sources: in_chans must be 2, got {in_chans}"
            )
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy={strategy!r}: use one of {STRATEGIES}")
        self.strategy = strategy
        feat = 4 * width
        self.encoder = nn.Sequential(_conv(1, width), DenseBlock(width, width, 3))
        self.merge = nn.Conv2d(2 * feat, feat, 1) if strategy == "concat" else None
        self.decoder = nn.Sequential(
            _conv(feat, feat), _conv(feat, 2 * width), _conv(2 * width, width),
            _conv(width, 1, act=None),
        )  # fmt: skip
        self.skip = skip
        if skip:  # start as the pixel average: the correction is zero
            nn.init.zeros_(self.decoder[-1].conv.weight)
            nn.init.zeros_(self.decoder[-1].conv.bias)

    def fuse(self, a: Tensor, b: Tensor, strategy: str | None = None) -> Tensor:
        """The fusion layer on the two encoded maps (B, 4w, H, W) -> (B, 4w, H, W)."""
        strategy = strategy or self.strategy
        if strategy == "add":
            return a + b
        if strategy == "l1":
            return l1_norm_fusion(a, b)
        return torch.relu(self.merge(torch.cat([a, b], 1)))

    def reconstruct(self, x: Tensor) -> Tensor:
        """The auto-encoder alone on single images (B, 1, H, W) -> (B, 1, H, W) in [0, 1]
        (decoder(encoder(x)), plus logit(x) with the skip)."""
        out = self.decoder(self.encoder(x))
        if self.skip:
            out = out + torch.logit(x, eps=1e-3)
        return torch.sigmoid(out)

    def forward(self, x: Tensor, strategy: str | None = None) -> Tensor:
        """Fuse [infrared, visible luma] (N, 2, H, W) -> (N, 1, H, W); ``strategy`` picks a
        weight-free rule (``add``/``l1``) at test time in place of the built one. A single
        channel (N, 1, H, W) is reconstructed instead (auto-encoder training)."""
        if x.ndim == 4 and x.shape[1] == 1:
            return self.reconstruct(x)
        if strategy is not None and strategy != self.strategy:
            if strategy not in ("add", "l1"):
                raise ConfigError(f"strategy={strategy!r}: switch only to 'add' or 'l1'")
        if x.ndim != 4 or x.shape[1] != 2:
            raise ConfigError(
                f"DenseFuse expects (N, 2, H, W) = [infrared, visible luma], got {tuple(x.shape)}"
            )
        b = x.shape[0]
        feats = self.encoder(torch.cat([x[:, :1], x[:, 1:]], 0))  # both sources: (2B, 4w, H, W)
        fused = self.fuse(feats[:b], feats[b:], strategy)  # (B, 4w, H, W)
        out = self.decoder(fused)  # (B, 1, H, W)
        if self.skip:
            out = out + torch.logit(x.mean(1, keepdim=True), eps=1e-3)
        return torch.sigmoid(out)


@register_model(default_cfg={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
                             "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0})  # fmt: skip
def densefuse(num_classes: int = 1, in_chans: int = 2, **kw) -> DenseFuse:
    """DenseFuse (width 16; ``width``, ``strategy`` in add / l1 / concat, ``skip`` kwargs)."""
    if num_classes != 1:
        raise ConfigError(
            f"a fusion network outputs one image: num_classes must be 1, got {num_classes}"
        )
    return DenseFuse(in_chans, **kw)
