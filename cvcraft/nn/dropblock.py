"""DropBlock (Ghiasi et al. 2018): dropout for conv maps that zeroes contiguous squares.

Neighbouring activations of a conv map are correlated, so dropping single units (Dropout)
barely removes information; DropBlock drops ``block x block`` squares instead. Block centres
("seeds") are Bernoulli(gamma) over the positions where a whole block fits, with the paper's
``gamma = (1 - keep_prob) / block^2 * H W / ((H - block + 1)(W - block + 1))`` so that about
``1 - keep_prob`` of the units are dropped; each seed is grown into its square by a stride-1
max-pool, and the survivors are rescaled by ``numel / kept`` so the expected sum is kept.
Identity in eval mode. YOLOv4 uses it in its CSPDarknet-53 backbone.
Shapes: (B, C, H, W) -> (B, C, H, W); one mask per sample and channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError

__all__ = ["DropBlock", "block_mask", "drop_block", "dropblock_gamma"]


def _check(drop_prob: float, block_size: int) -> None:
    if not 0.0 <= drop_prob < 1.0:
        raise ConfigError(f"DropBlock drop_prob={drop_prob} must be in [0, 1)")
    if block_size < 1 or block_size % 2 == 0:
        raise ConfigError(
            f"DropBlock block_size={block_size} must be a positive odd number (a square "
            "centred on its seed), e.g. 7 as in the paper"
        )


def dropblock_gamma(drop_prob: float, block_size: int, h: int, w: int) -> float:
    """The seed rate of the paper's eq. (1), rectangular form:
    ``drop_prob / b^2 * H W / ((H - b + 1)(W - b + 1))``, b clipped to the map."""
    b = min(block_size, h, w)
    return drop_prob / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))


def block_mask(seeds: torch.Tensor, block_size: int) -> torch.Tensor:
    """Keep-mask from seed positions: 0 inside the ``block x block`` square centred on each
    seed (1 in ``seeds``), 1 elsewhere. (B, C, H, W) {0, 1} -> (B, C, H, W) {0, 1}."""
    dropped = F.max_pool2d(seeds, block_size, stride=1, padding=block_size // 2)
    return 1.0 - dropped


def drop_block(
    x: torch.Tensor,
    drop_prob: float = 0.1,
    block_size: int = 7,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Functional DropBlock (module docstring); identity when not training or drop_prob 0."""
    _check(drop_prob, block_size)
    if x.dim() != 4:
        raise ConfigError(f"DropBlock takes (B, C, H, W) maps, got shape {tuple(x.shape)}")
    if not training or drop_prob == 0.0:
        return x
    b_, c, h, w = x.shape
    side = min(h, w)  # a block larger than the map shrinks to the largest odd size that fits
    bs = block_size if side >= block_size else (side - 1) // 2 * 2 + 1
    gamma = dropblock_gamma(drop_prob, bs, h, w)
    r = bs // 2
    # seeds only where the whole block lies inside the map (the paper's valid region)
    valid = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    valid[r : h - r, r : w - r] = 1.0
    u = torch.rand(b_, c, h, w, generator=generator, dtype=x.dtype, device=x.device)
    seeds = (u < gamma).to(x.dtype) * valid
    keep = block_mask(seeds, bs)  # (B, C, H, W)
    kept = keep.sum()
    return x * keep * (keep.numel() / kept.clamp(min=1.0))


class DropBlock(nn.Module):
    """DropBlock as a layer (module docstring). ``drop_prob`` is an attribute so a schedule
    can raise it during training (the paper ramps it linearly from 0)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7) -> None:
        super().__init__()
        _check(drop_prob, block_size)
        self.drop_prob, self.block_size = drop_prob, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block(x, self.drop_prob, self.block_size, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"
