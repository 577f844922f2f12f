"""Batch augmentation on the device, for data held as uint8 tensors: alternating flip and
random translation from a pre-padded batch (the airbench recipe's two augmentations).

Alternating flip: each image gets a random flip in its first epoch (keyed by seed and its
dataset index) and then the opposite one every epoch after, so over any two consecutive
epochs the network sees both orientations of every image exactly once, without the
repeats and gaps an independent coin flip per epoch leaves.
``flipped(i, e) = first(i) xor (e mod 2)``.
Translation: crop an ``H x W`` window at offset ``(dy, dx) in [0, 2p]^2`` out of the batch
reflect-padded by ``p``; done with one gather so the batch is never looped over.
Shapes: images (N, C, H, W) uint8 (or float); padded (N, C, H+2p, W+2p); indices (N,).
"""

from __future__ import annotations

import torch

from cvcraft.errors import ConfigError, DataError

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio): spreads seeds over the bits


def first_flip(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """The epoch-0 flip of each dataset index: a fixed coin per (seed, index), (N,) bool.
    A splitmix-style integer hash, so it needs no table the size of the dataset and is the
    same on every device and every run."""
    x = indices.to(torch.int64) * 2 + 1 + (int(seed) * _MIX % 2**61)
    # xorshift-multiply rounds (int64 wraps, which is what the hash wants)
    x = x ^ (x >> 31)
    x = x * 0x5851F42D4C957F2D
    x = x ^ (x >> 29)
    x = x * 0x2545F4914F6CDD1D
    x = x ^ (x >> 32)
    return (x & 1).bool()


def alternating_flip_mask(indices: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
    """Which of ``indices`` are flipped in ``epoch``: ``first_flip xor (epoch odd)``, (N,)."""
    return first_flip(indices, seed) ^ bool(epoch % 2)


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``images`` (N, C, H, W) with the rows where ``mask`` (N,) is true mirrored left-right."""
    if images.ndim != 4 or mask.shape != images.shape[:1]:
        raise DataError(
            f"flip_where: images (N, C, H, W) and mask (N,), got {tuple(images.shape)} "
            f"and {tuple(mask.shape)}"
        )
    return torch.where(mask.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)


def reflect_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad (N, C, H, W) by ``pad`` on every side (without repeating the edge, as
    ``numpy.pad(mode='reflect')``); works on uint8, which ``F.pad`` reflect does not."""
    if images.ndim != 4:
        raise DataError(f"reflect_pad: images must be (N, C, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if not 0 <= pad < min(h, w):
        raise ConfigError(f"translate pad={pad} must be in [0, {min(h, w) - 1}] for {h}x{w}")

    def index(n: int) -> torch.Tensor:
        i = torch.arange(-pad, n + pad, device=images.device).abs()
        return torch.where(i >= n, 2 * (n - 1) - i, i)

    return images[:, :, index(h)][:, :, :, index(w)]


def translate(padded: torch.Tensor, offsets: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Windows ``padded[n, :, dy:dy+H, dx:dx+W]`` for ``offsets[n] = (dy, dx)``: (N, C, H, W)."""
    n, c, hp, wp = padded.shape
    h, w = size
    if offsets.shape != (n, 2):
        raise DataError(f"translate: offsets must be (N, 2) = ({n}, 2), got {tuple(offsets.shape)}")
    off = offsets.to(device=padded.device, dtype=torch.int64)
    limit = torch.tensor([hp - h, wp - w], device=off.device)
    if bool(((off < 0) | (off > limit)).any()):
        raise DataError(f"translate: offsets must be in [0, {hp - h}] x [0, {wp - w}]")
    rows = off[:, :1] + torch.arange(h, device=padded.device)  # (N, H)
    cols = off[:, 1:] + torch.arange(w, device=padded.device)  # (N, W)
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, wp))  # (N, C, H, Wp)
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def random_offsets(n: int, pad: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 2) int64 offsets uniform in [0, 2 * pad] from ``generator`` (CPU)."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)


class DeviceAugment:
    """Alternating flip and/or random translation of a uint8 batch already on the device.
    ``__call__(images, indices, epoch, generator)``: the flip is keyed by (seed, index,
    epoch), the translation draws from ``generator`` (keyed by the caller by epoch/step)."""

    def __init__(self, flip: bool = True, pad: int = 2, seed: int = 0) -> None:
        if pad < 0:
            raise ConfigError(f"translate pad={pad} must be >= 0")
        self.flip, self.pad, self.seed = flip, int(pad), int(seed)

    def __call__(
        self,
        images: torch.Tensor,
        indices: torch.Tensor,
        epoch: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if self.flip:
            images = flip_where(images, alternating_flip_mask(indices, epoch, self.seed))
        if self.pad:
            offsets = random_offsets(images.shape[0], self.pad, generator)
            images = translate(reflect_pad(images, self.pad), offsets, images.shape[-2:])
        return images
