"""Patch-whitening first convolution: a fixed k x k conv whose filters decorrelate the
image's k x k patches, so the network starts from whitened (PCA-rotated, unit-variance) input.

The filters come from the eigendecomposition of the training patches' covariance
``C = V diag(lam) V^T``: filter ``i`` is ``v_i / sqrt(lam_i + eps)`` (largest ``lam`` first), its
bias ``-w_i . mean``, so a filter's output over the training patches has variance
``lam_i / (lam_i + eps)``. Each filter is kept with its negation (2 * C * k * k channels), so a
ReLU/GELU after it loses no sign. The layer is trained (bias only, by default) for the first
``freeze_epoch`` epochs and frozen after (the idea of Keller Jordan's airbench).
Shapes: images (N, C, H, W) float -> patches (N * (H-k+1) * (W-k+1), C*k*k) -> weight
(2*C*k*k, C, k, k); forward (N, C, H, W) -> (N, 2*C*k*k, H-k+1, W-k+1).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError, DataError


def image_patches(images: torch.Tensor, k: int) -> torch.Tensor:
    """Every k x k patch of ``images`` (N, C, H, W), flattened in (c, y, x) order like a conv
    weight: (N * (H-k+1) * (W-k+1), C*k*k)."""
    if images.ndim != 4:
        raise DataError(f"image_patches: images must be (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if k < 1 or k > min(h, w):
        raise ConfigError(f"patch size k={k} must be in [1, {min(h, w)}] for {h}x{w} images")
    p = images.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)


def whitening_filters(
    patches: torch.Tensor, eps: float = 5e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(filters (D, D), biases (D,), eigenvalues (D,)) of ``patches`` (M, D): row ``i`` is
    ``v_i / sqrt(lam_i + eps)`` for the covariance's eigenpairs in descending ``lam``, the bias
    ``-row . mean``. Computed in float64 (a 12 x 12 eigenproblem; float32 loses the small
    eigenvalues)."""
    if patches.ndim != 2 or patches.shape[0] < 2:
        raise DataError(f"whitening needs >= 2 patches as (M, D), got {tuple(patches.shape)}")
    if eps < 0:
        raise ConfigError(f"whitening eps={eps} must be >= 0")
    x = patches.double()
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / x.shape[0]  # (D, D), the population covariance
    lam, vec = torch.linalg.eigh(cov)  # ascending
    lam, vec = lam.flip(0).clamp_min(0.0), vec.flip(1)
    filters = vec.T / torch.sqrt(lam + eps)[:, None]
    return filters, -(filters @ mean), lam


class PatchWhitening(nn.Conv2d):
    """A ``kernel_size`` conv (no padding) from ``in_chans`` to ``2 * in_chans * k^2`` whitened
    channels; call :meth:`fit` with training images, :meth:`set_epoch` each epoch."""

    def __init__(
        self,
        in_chans: int = 3,
        kernel_size: int = 2,
        eps: float = 5e-4,
        freeze_epoch: int = 3,
        train_weight: bool = False,
    ) -> None:
        d = in_chans * kernel_size * kernel_size
        super().__init__(in_chans, 2 * d, kernel_size, padding=0, bias=True)
        self.eps, self.freeze_epoch, self.train_weight = float(eps), int(freeze_epoch), train_weight
        self.set_epoch(0)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """Set the filters from ``images`` (N, C, H, W), already normalised as the model will
        see them; returns the eigenvalues (D,), largest first."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise DataError(
                f"PatchWhitening.fit: images must be (N, {self.in_channels}, H, W), "
                f"got {tuple(images.shape)}"
            )
        k = self.kernel_size[0]
        filters, bias, lam = whitening_filters(image_patches(images.float(), k), self.eps)
        w = filters.reshape(-1, self.in_channels, k, k)
        self.weight.copy_(torch.cat([w, -w]).to(self.weight))
        self.bias.copy_(torch.cat([bias, -bias]).to(self.bias))
        return lam

    def set_epoch(self, epoch: int) -> None:
        """Trainable before ``freeze_epoch`` (the weight only with ``train_weight``), frozen
        from then on (a frozen parameter gets no gradient, so no optimizer step moves it)."""
        live = epoch < self.freeze_epoch
        self.weight.requires_grad_(live and self.train_weight)
        self.bias.requires_grad_(live)


def set_whitening_epoch(model: nn.Module, epoch: int) -> int:
    """Call ``set_epoch(epoch)`` on every :class:`PatchWhitening` in ``model``; how many."""
    layers = [m for m in model.modules() if isinstance(m, PatchWhitening)]
    for m in layers:
        m.set_epoch(epoch)
    return len(layers)


class WhitenedModel(nn.Module):
    """``model(whiten(x))``: a classifier built for ``2 * C * k^2`` input channels behind a
    :class:`PatchWhitening` stem."""

    def __init__(self, whiten: PatchWhitening, model: nn.Module) -> None:
        super().__init__()
        self.whiten, self.model = whiten, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.whiten(x))
