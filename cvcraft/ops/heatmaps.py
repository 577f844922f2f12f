"""Keypoint heatmaps: Gaussian training targets and sub-pixel decoding (SimpleBaseline).

Coordinates are continuous input pixels (pixel i spans [i, i + 1)); heatmap cell j at
``stride`` s covers input [j s, (j + 1) s), so a keypoint x sits at heatmap position
mu = x / s - 0.5.
- target:  H_k(i, j) = exp(-((j - mu_x)^2 + (i - mu_y)^2) / (2 sigma^2)), weight 1 where the
  keypoint is labelled (v > 0) and inside the image, else 0;
- decode:  (i*, j*) = argmax H_k; move a quarter cell towards the higher neighbour in x and
  in y (the "quarter offset"; none along an axis where the peak is on the border);
  x = (j* + dx + 0.5) s; score = H_k(i*, j*).

Shapes: keypoints (N, K, 3) -> targets (N, K, h, w), weights (N, K); heatmaps (N, K, h, w)
-> keypoints (N, K, 2), scores (N, K).
"""

from __future__ import annotations

import torch

from cvcraft.errors import ConfigError, DataError


def gaussian_heatmaps(
    keypoints: torch.Tensor, size: tuple[int, int], stride: float, sigma: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian target heatmaps of (N, K, 3) keypoints on an (h, w) grid -> (N, K, h, w) and
    the (N, K) weights (labelled and inside the h*s x w*s input)."""
    if keypoints.ndim != 3 or keypoints.shape[-1] < 3:
        raise DataError(f"keypoints must be (N, K, 3) (x, y, v), got {tuple(keypoints.shape)}")
    if sigma <= 0 or stride <= 0:
        raise ConfigError(f"need sigma > 0 and stride > 0, got sigma={sigma}, stride={stride}")
    h, w = size
    kp = keypoints.float()
    mu = kp[..., :2] / stride - 0.5  # (N, K, 2) in cells
    ys = torch.arange(h, dtype=torch.float32, device=kp.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=kp.device).view(1, 1, 1, w)
    d2 = (xs - mu[..., 0, None, None]) ** 2 + (ys - mu[..., 1, None, None]) ** 2
    target = torch.exp(-d2 / (2 * sigma**2))
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= w * stride) & (kp[..., 1] >= 0)
    inside &= kp[..., 1] <= h * stride
    weight = ((kp[..., 2] > 0) & inside).float()
    return target * weight[..., None, None], weight


def decode_heatmaps(heatmaps: torch.Tensor, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax + quarter-offset keypoints (N, K, 2) in input pixels and their scores (N, K)."""
    if heatmaps.ndim != 4:
        raise DataError(f"heatmaps must be (N, K, h, w), got {tuple(heatmaps.shape)}")
    n, k, h, w = heatmaps.shape
    hm = heatmaps.float().reshape(n, k, h * w)
    score, idx = hm.max(-1)
    iy, ix = idx // w, idx % w
    pad = torch.nn.functional.pad(heatmaps.float(), (1, 1, 1, 1), mode="replicate").reshape(
        n, k, (h + 2) * (w + 2)
    )
    at = (iy + 1) * (w + 2) + (ix + 1)  # the peak in the padded map

    def nb(off: int) -> torch.Tensor:
        return pad.gather(-1, (at + off)[..., None])[..., 0]

    # a peak on the border has only one neighbour along that axis: no step there
    dx = torch.where((ix > 0) & (ix < w - 1), torch.sign(nb(1) - nb(-1)) * 0.25, 0.0)
    dy = torch.where((iy > 0) & (iy < h - 1), torch.sign(nb(w + 2) - nb(-(w + 2))) * 0.25, 0.0)
    xy = torch.stack([ix.float() + dx + 0.5, iy.float() + dy + 0.5], -1) * stride
    return xy, score
