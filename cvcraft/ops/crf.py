"""Fully connected (dense) CRF post-processing of per-pixel class probabilities.

Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge
Potentials" (2011). Energy ``E(x) = sum_i U_i(x_i) + sum_{i,j} mu(x_i, x_j) k(f_i, f_j)`` with
Potts ``mu`` and two kernels: an appearance (bilateral) kernel on ``(x/sxy, y/sxy, rgb/srgb)``
and a smoothness (Gaussian) kernel on ``(x/sxy, y/sxy)``, each ``exp(-|f_i - f_j|^2 / 2)``.
Mean-field iterations: ``Q <- softmax(-U + sum_m w_m * K_m(Q))``, the kernels applied with
symmetric normalization ``n * K(n * Q)``, ``n = (K 1)^(-1/2)`` (as pydensecrf's default).

``K(Q)`` is a Gaussian filter in feature space: ``method="exact"`` sums over all pixel pairs
(O(N^2), for small images and as the reference), ``method="lattice"`` uses the
permutohedral lattice (Adams, Baek & Davis 2010; O(N d^2)): splat each pixel onto the d + 1
vertices of its enclosing simplex, blur along the d + 1 lattice axes with [1 2 1], slice back.

Shapes: ``probs`` (C, H, W) float (softmax output), ``image`` (H, W, 3) uint8 RGB;
returns the refined probabilities (C, H, W) float32.
"""

from __future__ import annotations

import numpy as np

from cvcraft.errors import ConfigError


def pixel_features(
    height: int, width: int, sxy: float, image: np.ndarray | None = None, srgb: float = 1.0
) -> np.ndarray:
    """(N, 2) ``(x, y) / sxy`` or, with an image, (N, 5) ``(x/sxy, y/sxy, rgb/srgb)``;
    pixels in row-major order."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    feats = [xx.ravel() / sxy, yy.ravel() / sxy]
    if image is not None:
        rgb = np.asarray(image, np.float64).reshape(-1, 3) / srgb
        feats += [rgb[:, 0], rgb[:, 1], rgb[:, 2]]
    return np.stack(feats, 1)


def gaussian_filter_exact(
    features: np.ndarray, values: np.ndarray, chunk: int = 1024
) -> np.ndarray:
    """``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` over all pairs (self included):
    features (N, d), values (N, C) -> (N, C), in row chunks to bound memory."""
    f = np.asarray(features, np.float64)
    v = np.asarray(values, np.float64)
    sq = (f * f).sum(1)
    out = np.empty_like(v)
    for s in range(0, len(f), chunk):
        d2 = sq[s : s + chunk, None] + sq[None, :] - 2.0 * f[s : s + chunk] @ f.T
        out[s : s + chunk] = np.exp(-0.5 * np.maximum(d2, 0.0)) @ v
    return out


class PermutohedralLattice:
    """A Gaussian filter in d-dimensional feature space on the permutohedral lattice.

    Built once per feature set (the splat indices and weights, the blur neighbours), then
    ``filter(values)`` costs O(N (d + 1) C). The result approximates
    ``gaussian_filter_exact`` up to a constant factor (cancelled by normalization).
    """

    def __init__(self, features: np.ndarray) -> None:
        f = np.asarray(features, np.float64)
        n, d = f.shape
        self.d = d
        # Embed in the hyperplane sum(x) = 0 of R^(d+1), scaled so the lattice blur has std ~1.
        inv_std = np.sqrt(2.0 / 3.0) * (d + 1)
        cf = f * (inv_std / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2.0)))  # (N, d)
        suffix = np.concatenate([np.cumsum(cf[:, ::-1], 1)[:, ::-1], np.zeros((n, 1))], 1)
        elev = suffix.copy()  # elev[:, i] = sum_{k >= i} cf_k - i * cf_{i-1}
        elev[:, 1:] -= np.arange(1, d + 1) * cf
        # Nearest remainder-0 lattice point, then the rank of each coordinate's residual.
        v = elev / (d + 1)
        up, down = np.ceil(v) * (d + 1), np.floor(v) * (d + 1)
        greedy = np.where(up - elev < elev - down, up, down)
        total = np.rint(greedy.sum(1) / (d + 1)).astype(np.int64)  # (N,)
        res = elev - greedy
        i, j = np.arange(d + 1)[:, None], np.arange(d + 1)[None, :]
        ri, rj = res[:, :, None], res[:, None, :]  # (N, d+1, 1), (N, 1, d+1)
        # rank[i] = #{j < i: res_j >= res_i} + #{j > i: res_j > res_i}
        rank = (((j < i) & (rj >= ri)) | ((j > i) & (rj > ri))).sum(2).astype(np.int64)
        # Bring the point back onto the hyperplane if rounding moved it off.
        t = total[:, None]
        hi = (t > 0) & (rank >= d + 1 - t)
        lo = (t < 0) & (rank < -t)
        greedy = greedy - (d + 1) * hi + (d + 1) * lo
        rank = rank + t + np.where(hi, -(d + 1), 0) + np.where(lo, d + 1, 0)
        res = elev - greedy
        # Barycentric weights of the d + 1 simplex vertices.
        # bary[d - rank_k] += res_k / (d + 1), bary[d + 1 - rank_k] -= res_k / (d + 1)
        rows = np.arange(n)[:, None] * (d + 2)
        slot = np.concatenate([rows + d - rank, rows + d + 1 - rank], 1).ravel()
        amount = np.concatenate([res, -res], 1).ravel() / (d + 1)
        bary = np.bincount(slot, weights=amount, minlength=n * (d + 2)).reshape(n, d + 2)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.weights = bary[:, : d + 1]  # (N, d+1)
        # Vertex r of the simplex: greedy + canonical[r][rank]; the last coordinate is
        # redundant (coordinates sum to 0), so d coordinates identify a vertex.
        r = np.arange(d + 1)[:, None, None]  # (d+1, 1, 1)
        canon = np.where(rank[None, :, :d] <= d - r, r, r - (d + 1))  # (d+1, N, d)
        verts = greedy[None, :, :d].astype(np.int64) + canon  # (d+1, N, d)
        base = verts.reshape(-1, d).min(0) - (d + 2)
        span = int((verts.reshape(-1, d).max(0) - base).max()) + d + 3
        if span**d >= 2**62:
            raise ConfigError(
                f"dense CRF features span {span} lattice units in {d} dimensions, too many to "
                "index; use larger sxy/srgb (the kernels' standard deviations)"
            )
        self._base, self._span = base, span
        keys = self._key(verts.reshape(-1, d))
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.index = inverse.reshape(d + 1, n).T  # (N, d+1) lattice point of each vertex
        # Blur neighbours along each lattice axis k: all coords -1 except coord k + d (and the
        # opposite). For k = d the dropped coordinate carries the +d.
        coords = self._coords(self.keys)
        self.neighbours = []
        for k in range(d + 1):
            step = -np.ones(d, np.int64)
            if k < d:
                step[k] = d
            self.neighbours.append((self._find(coords + step), self._find(coords - step)))

    def _key(self, coords: np.ndarray) -> np.ndarray:
        c = coords - self._base
        key = np.zeros(len(c), np.int64)
        for k in range(c.shape[1]):
            key = key * self._span + c[:, k]
        return key

    def _coords(self, keys: np.ndarray) -> np.ndarray:
        out = np.empty((len(keys), self.d), np.int64)
        rest = keys.copy()
        for k in range(self.d - 1, -1, -1):
            out[:, k] = rest % self._span
            rest //= self._span
        return out + self._base

    def _find(self, coords: np.ndarray) -> np.ndarray:
        key = self._key(coords)
        pos = np.searchsorted(self.keys, key).clip(max=len(self.keys) - 1)
        return np.where(self.keys[pos] == key, pos, -1)

    def filter(self, values: np.ndarray) -> np.ndarray:
        """Approximate Gaussian filtering of values (N, C) -> (N, C)."""
        v = np.asarray(values, np.float64)
        m, c = len(self.keys), v.shape[1]
        # splat: one bincount per channel (much faster than np.add.at)
        idx, w = self.index.ravel(), self.weights.ravel()
        grid = np.stack(
            [np.bincount(idx, weights=w * np.repeat(v[:, k], self.d + 1), minlength=m + 1)
             for k in range(c)], 1
        )  # fmt: skip  # (M + 1, C); row m stays 0: the missing neighbour

        for n1, n2 in self.neighbours:
            grid[:m] = 0.5 * grid[:m] + 0.25 * (grid[n1] + grid[n2])
        return (self.weights[:, :, None] * grid[self.index]).sum(1)


def _kernel(features: np.ndarray, method: str):  # -> callable (N, C) -> (N, C)
    if method == "exact":
        filt = lambda v: gaussian_filter_exact(features, v)  # noqa: E731
    else:
        filt = PermutohedralLattice(features).filter
    norm = 1.0 / np.sqrt(filt(np.ones((len(features), 1)))[:, 0] + 1e-20)
    return lambda q: norm[:, None] * filt(norm[:, None] * q)


def dense_crf(
    probs: np.ndarray,
    image: np.ndarray,
    *,
    iterations: int = 5,
    sxy_gaussian: float = 3.0,
    compat_gaussian: float = 3.0,
    sxy_bilateral: float = 80.0,
    srgb: float = 13.0,
    compat_bilateral: float = 10.0,
    method: str = "lattice",
) -> np.ndarray:
    """Refine class probabilities (C, H, W) with a dense CRF on the RGB image (H, W, 3)
    uint8 -> (C, H, W) float32 (defaults: pydensecrf's common settings)."""
    p = np.asarray(probs, np.float64)
    img = np.asarray(image)
    if p.ndim != 3:
        raise ConfigError(f"dense_crf: probs must be (C, H, W), got shape {p.shape}")
    c, h, w = p.shape
    if img.shape != (h, w, 3):
        raise ConfigError(
            f"dense_crf: image must be ({h}, {w}, 3) RGB to match probs, got {img.shape}"
        )
    if method not in ("lattice", "exact"):
        raise ConfigError(f"dense_crf: method must be 'lattice' or 'exact', got {method!r}")
    if iterations < 0 or min(sxy_gaussian, sxy_bilateral, srgb) <= 0:
        raise ConfigError("dense_crf: iterations must be >= 0 and sxy/srgb > 0")
    unary = -np.log(np.clip(p.reshape(c, -1).T, 1e-8, None))  # (N, C)
    kernels = [
        (compat_gaussian, _kernel(pixel_features(h, w, sxy_gaussian), method)),
        (compat_bilateral, _kernel(pixel_features(h, w, sxy_bilateral, img, srgb), method)),
    ]
    q = _softmax(-unary)
    for _ in range(iterations):
        logits = -unary
        for weight, apply in kernels:
            if weight:
                logits = logits + weight * apply(q)
        q = _softmax(logits)
    return q.T.reshape(c, h, w).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


__all__ = ["PermutohedralLattice", "dense_crf", "gaussian_filter_exact", "pixel_features"]
