"""Batch-level Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) for classification.

Both blend each image with a partner from the same batch and give the pair a soft target:

- Mixup: x = lam * x_i + (1 - lam) * x_j, y = lam * y_i + (1 - lam) * y_j, lam ~ Beta(a, a).
- CutMix: a box of area (1 - lam) * H * W (sides sqrt(1 - lam) * H, W) centred uniformly at
  random is pasted from x_j; after clipping at the border, lam is recomputed as
  1 - pasted_area / (H * W), so the target matches the pixels actually shown.

Targets are then label-smoothed: y' = y * (1 - eps) + eps / K, so every row sums to 1.
Mixing runs on collated tensors (after normalization is fine: normalization is affine per
channel and lam + (1 - lam) = 1, so mixing before or after it gives the same input).
All randomness comes from the generator given, which the caller makes as
``np.random.default_rng([seed, epoch, step, 1])`` so a batch mixes identically on a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvcraft.errors import ConfigError, DataError


@dataclass(frozen=True)
class MixParams:
    """One batch's draw: which op, lam (after the CutMix area correction), partner order
    ``perm`` (N,), and the CutMix box ``(y1, y2, x1, x2)`` in pixels (None for Mixup/none)."""

    mode: str  # "mixup" | "cutmix" | "none"
    lam: float
    perm: np.ndarray
    box: tuple[int, int, int, int] | None = None


def cutmix_box(
    height: int, width: int, lam: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A box of nominal area (1 - lam) * H * W at a uniform random centre, clipped to the image.

    Returns ``(y1, y2, x1, x2)`` (end-exclusive pixel indices); its clipped area may be
    smaller than nominal, which is why the caller recomputes lam from it.
    """
    ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y1, y2 = np.clip([cy - cut_h // 2, cy + cut_h - cut_h // 2], 0, height)
    x1, x2 = np.clip([cx - cut_w // 2, cx + cut_w - cut_w // 2], 0, width)
    return int(y1), int(y2), int(x1), int(x2)


class MixupCutmix:
    """Mix a batch with Mixup or CutMix and return ``(images, soft_targets)``.

    ``mixup_alpha`` / ``cutmix_alpha``: Beta parameters (0 turns that op off). With both on,
    CutMix is chosen with probability ``switch_prob``. A batch is mixed with probability
    ``prob``; an unmixed batch still gets (smoothed) one-hot targets so the loss sees one
    target kind. Partners come from a random permutation of the batch.

    images: (N, C, H, W) any dtype; Mixup returns float32 (uint8 input stays in 0-255 units),
    CutMix keeps the dtype. labels: int (N,). Targets: float32 (N, num_classes), rows sum to 1.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
    ) -> None:
        if num_classes < 1:
            raise ConfigError(f"MixupCutmix: num_classes must be >= 1, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ConfigError(
                f"mixup={mixup_alpha} / cutmix={cutmix_alpha}: Beta alphas must be >= 0 (0 = off)"
            )
        for key, v in (("mix_prob", prob), ("mix_switch", switch_prob)):
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{key}={v} must be in [0, 1]")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.num_classes = int(num_classes)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.label_smoothing = float(label_smoothing)

    @property
    def active(self) -> bool:
        """True when some batch can be mixed (an alpha > 0 and prob > 0)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    def make_params(self, n: int, height: int, width: int, rng: np.random.Generator) -> MixParams:
        """Draw op, lam, partner order and CutMix box for a batch of n images of H x W."""
        identity = np.arange(n)
        if not self.active or rng.random() >= self.prob:
            return MixParams("none", 1.0, identity)
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha == 0 or rng.random() < self.switch_prob
        )
        perm = rng.permutation(n)
        if use_cutmix:
            lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha))
            box = cutmix_box(height, width, lam, rng)
            y1, y2, x1, x2 = box
            lam = 1.0 - (y2 - y1) * (x2 - x1) / float(height * width)  # the area shown
            return MixParams("cutmix", lam, perm, box)
        lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
        return MixParams("mixup", lam, perm)

    def targets(self, labels: torch.Tensor, params: MixParams) -> torch.Tensor:
        """Soft targets lam * onehot(y) + (1 - lam) * onehot(y[perm]), then smoothed. (N, K)."""
        if labels.dtype.is_floating_point or labels.ndim != 1:
            raise DataError(f"MixupCutmix needs int class labels (N,), got {labels.dtype} "
                            f"{tuple(labels.shape)}")  # fmt: skip
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(
                f"MixupCutmix: labels span [{int(labels.min())}, {int(labels.max())}] but "
                f"num_classes={self.num_classes}"
            )
        eye = torch.nn.functional.one_hot(labels.long(), self.num_classes).float()  # (N, K)
        perm = torch.as_tensor(params.perm, device=labels.device)
        y = params.lam * eye + (1.0 - params.lam) * eye[perm]
        eps = self.label_smoothing
        return y * (1.0 - eps) + eps / self.num_classes

    def apply(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        """Mix the images with the drawn params (does not modify ``images``)."""
        if params.mode == "none":
            return images
        perm = torch.as_tensor(params.perm, device=images.device)
        if params.mode == "mixup":
            x = images.float()
            return x.mul(params.lam).add_(x[perm], alpha=1.0 - params.lam)
        y1, y2, x1, x2 = params.box  # type: ignore[misc]
        out = images.clone()
        out[:, :, y1:y2, x1:x2] = images[perm][:, :, y1:y2, x1:x2]
        return out

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) images + int (N,) labels -> (mixed images, float (N, K) targets)."""
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"MixupCutmix needs images (N, C, H, W) and labels (N,), got "
                f"{tuple(images.shape)} and {tuple(labels.shape)}"
            )
        params = self.make_params(images.shape[0], images.shape[2], images.shape[3], rng)
        return self.apply(images, params), self.targets(labels, params)

    def __repr__(self) -> str:
        return (
            f"MixupCutmix(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, switch_prob="
            f"{self.switch_prob}, label_smoothing={self.label_smoothing})"
        )
