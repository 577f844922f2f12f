"""Cross mini-Batch Normalization (CmBN, YOLOv4 sec. 3.3) on one device.

With gradient accumulation, one optimizer step sees ``window`` mini-batches but BatchNorm
normalises each with its own small-batch statistics. CmBN pools the statistics of the
mini-batches *inside one accumulation window*: since the weights do not change within the
window, the earlier mini-batches' sums are exactly what they would be now, so the k-th
mini-batch is normalised with the mean/variance of mini-batches 1..k together
(``mu = sum_j S_j / sum_j n_j``, ``var = sum_j Q_j / sum_j n_j - mu^2``, S/Q = per-channel
sums of x and x^2). Unlike CBN (Yao et al. 2020), which pools across *optimizer steps* and
must compensate for changed weights with a Taylor term, nothing is approximated in the
values; the approximation is in the gradient: earlier mini-batches' statistics enter as
constants (their graphs have already been back-propagated), as in the Darknet
implementation. Running statistics are updated once per window with the pooled statistics
(unbiased variance), as BatchNorm fed the whole window at once would. The window is counted
in training forwards; set ``window`` to the trainer's gradient accumulation steps. Eval: the
running statistics, as BatchNorm. Shapes: (B, C, H, W) -> (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.norm import NORMS

__all__ = ["CmBN"]


class CmBN(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics pool the mini-batches of one accumulation
    window (module docstring); ``window=1`` is plain BatchNorm2d."""

    def __init__(
        self, num_features: int, window: int = 4, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        if window < 1:
            raise ConfigError(f"CmBN window={window} must be >= 1 (the accumulation steps)")
        self.window = window
        self._seen = 0  # mini-batches seen in the current window
        self.register_buffer("_sum", torch.zeros(num_features), persistent=False)
        self.register_buffer("_sumsq", torch.zeros(num_features), persistent=False)
        self.register_buffer("_count", torch.zeros(()), persistent=False)

    def reset_window(self) -> None:
        """Start a new accumulation window (forget the pooled sums)."""
        self._seen = 0
        self._sum.zero_()
        self._sumsq.zero_()
        self._count.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ConfigError(
                f"CmBN({self.num_features}) takes (B, {self.num_features}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)  # fmt: skip
        n = x.numel() // x.shape[1]
        xf = x.float()
        s, q = xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3))  # (C,) with grad
        total = self._count + n
        mean = (self._sum + s) / total
        var = ((self._sumsq + q) / total - mean * mean).clamp(min=0)
        shape = (1, -1, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        y = (y * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)
        with torch.no_grad():
            self._sum += s.detach()
            self._sumsq += q.detach()
            self._count += n
            self._seen += 1
            if self._seen == self.window:
                m = self._count
                unbiased = var.detach() * m / (m - 1).clamp(min=1)
                mom = self.momentum
                self.running_mean.mul_(1 - mom).add_(mean.detach(), alpha=mom)
                self.running_var.mul_(1 - mom).add_(unbiased, alpha=mom)
                self.num_batches_tracked += 1
                self.reset_window()
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window={self.window}"


NORMS.register("cmbn", CmBN)
