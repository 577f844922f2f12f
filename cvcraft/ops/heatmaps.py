"""Keypoint heatmaps: Gaussian training targets and sub-pixel decoding (SimpleBaseline).

Coordinates are continuous input pixels (pixel i spans [i, i + 1)); heatmap cell j at
``stride`` s covers input [j s, (j + 1) s), so a keypoint x sits at heatmap position
mu = x / s - 0.5.
- target:  H_k(i, j) = exp(-((j - mu_x)^2 + (i - mu_y)^2) / (2 sigma^2)), weight 1 where the
  keypoint is labelled (v > 0) and inside the image, else 0;
- decode:  (i*, j*) = argmax H_k; move a quarter cell towards the higher neighbour in x and
  in y (the "quarter offset"; none along an axis where the peak is on the border);
  x = (j* + dx + 0.5) s; score = H_k(i*, j*).

- DARK (Zhang et al. 2020, distribution-aware decoding): blur the heatmap with the target's
  Gaussian (keeping its peak), take log, and step from the argmax by the Newton/Taylor
  offset -H^-1 g of the log-heatmap (central differences), exact for a Gaussian peak.

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


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every map (radius 3 sigma, replicated border)."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    n, k, h, w = x.shape
    y = torch.nn.functional.pad(x.reshape(n * k, 1, h, w), (r, r, r, r), mode="replicate")
    y = torch.nn.functional.conv2d(y, g.view(1, 1, 1, -1))
    y = torch.nn.functional.conv2d(y, g.view(1, 1, -1, 1))
    return y.reshape(n, k, h, w)


def decode_heatmaps_dark(
    heatmaps: torch.Tensor, stride: float, sigma: float | None = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """DARK decoding: keypoints (N, K, 2) in input pixels and scores (N, K) (the raw peak).
    ``sigma`` is the blur (the targets' sigma; None = no blur). Peaks within 2 cells of the
    border keep the plain argmax."""
    if heatmaps.ndim != 4:
        raise DataError(f"heatmaps must be (N, K, h, w), got {tuple(heatmaps.shape)}")
    hm = heatmaps.double()
    n, k, h, w = hm.shape
    score, idx = hm.reshape(n, k, -1).max(-1)
    if sigma:
        blurred = _gaussian_blur(hm, sigma)
        peak = blurred.reshape(n, k, -1).amax(-1).clamp_min(1e-12)
        hm = blurred * (score.clamp_min(1e-12) / peak)[..., None, None]
    lg = torch.log(hm.clamp_min(1e-10)).reshape(n, k, -1)
    iy, ix = idx // w, idx % w
    inner = (ix >= 2) & (ix < w - 2) & (iy >= 2) & (iy < h - 2)
    at = torch.where(inner, idx, 2 * w + 2)  # any interior cell: replaced below anyway

    def v(dy: int, dx: int) -> torch.Tensor:
        return lg.gather(-1, (at + dy * w + dx)[..., None])[..., 0]

    c = v(0, 0)
    gx, gy = 0.5 * (v(0, 1) - v(0, -1)), 0.5 * (v(1, 0) - v(-1, 0))
    hxx = 0.25 * (v(0, 2) - 2 * c + v(0, -2))
    hyy = 0.25 * (v(2, 0) - 2 * c + v(-2, 0))
    hxy = 0.25 * (v(1, 1) - v(-1, 1) - v(1, -1) + v(-1, -1))
    det = hxx * hyy - hxy**2
    ok = inner & (det.abs() > 1e-12)
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe  # -H^-1 g
    oy = -(hxx * gy - hxy * gx) / safe
    ox, oy = torch.where(ok, ox, 0.0), torch.where(ok, oy, 0.0)
    xy = torch.stack([ix + ox + 0.5, iy + oy + 0.5], -1) * stride
    return xy.to(heatmaps.dtype), score.to(heatmaps.dtype)
