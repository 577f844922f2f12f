"""2-D convolution forward and backward, twice: naive loops and im2col; transposed conv.

Cross-correlation, as every deep-learning library computes it, with ``G`` groups
(``C_in = G Cg``, ``C_out = G Og``) and output channel ``o`` in group ``g = o // Og``:

    y[n, o, i, j] = b[o] + sum_{c < Cg, u < kh, v < kw}
                    w[o, c, u, v] x_pad[n, g Cg + c, i s_h + u d_h, j s_w + v d_w]

Backward, from the same sum: ``db[o] = sum_{n,i,j} dy``; ``dw[o, c, u, v] = sum_{n,i,j}
dy[n, o, i, j] x_pad[...]``; ``dx_pad[...] += w[o, c, u, v] dy[n, o, i, j]``, then drop the
padding. im2col lays every receptive field out as a column, so the sum is one matrix
product ``W (Og, Cg kh kw) @ cols (Cg kh kw, Ho Wo)`` per group; col2im is its adjoint
(scatter-add the columns back), which is why it gives ``dx`` and the transposed conv.

Shapes: x (N, C_in, H, W); w (C_out, C_in / G, kh, kw); b (C_out,); y (N, C_out, Ho, Wo).
Transposed conv: w (C_in, C_out / G, kh, kw), the layout of ``torch.nn.ConvTranspose2d``.
"""

from __future__ import annotations

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.reference.formulas import conv_output_size, conv_transpose_output_size

Pair = int | tuple[int, int]


def pair(v: Pair) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair is returned as is."""
    return (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def _check_conv(x: np.ndarray, w: np.ndarray, groups: int, in_axis: int) -> None:
    """``in_axis`` of w holds the input channels per group (1 for conv, 0 for transposed)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv needs x (N, C, H, W) and w 4-D, got {x.shape} and {w.shape}")
    if groups < 1 or x.shape[1] % groups:
        raise ConfigError(
            f"groups={groups} must be >= 1 and divide the {x.shape[1]} input channels"
        )
    per_group = w.shape[1] if in_axis == 1 else w.shape[0] // groups
    if in_axis == 1 and (per_group * groups != x.shape[1] or w.shape[0] % groups):
        raise ValueError(
            f"conv weight {w.shape} does not fit x {x.shape} with groups={groups}: need "
            f"w (C_out, C_in / groups, kh, kw) with C_out divisible by groups"
        )
    if in_axis == 0 and w.shape[0] != x.shape[1]:
        raise ValueError(
            f"transposed-conv weight {w.shape} does not fit x {x.shape}: need w (C_in, "
            f"C_out / groups, kh, kw)"
        )


def _out_hw(x: np.ndarray, k: tuple[int, int], s, p, d) -> tuple[int, int]:
    return tuple(conv_output_size(x.shape[2 + a], k[a], s[a], p[a], d[a]) for a in range(2))


# --- naive: one loop iteration per output position -------------------------------------


def conv2d_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> np.ndarray:
    """Convolution by the definition: for every output pixel (i, j) and group, the dot
    product of the dilated window with the kernels. (N, C_in, H, W) -> (N, C_out, Ho, Wo)."""
    _check_conv(x, w, groups, 1)
    s, p, d = pair(stride), pair(padding), pair(dilation)
    kh, kw = w.shape[2:]
    ho, wo = _out_hw(x, (kh, kw), s, p, d)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    cg, og = w.shape[1], w.shape[0] // groups
    y = np.zeros((x.shape[0], w.shape[0], ho, wo), dtype=np.result_type(x, w))
    for g in range(groups):
        wg = w[g * og : (g + 1) * og]  # (Og, Cg, kh, kw)
        for i in range(ho):
            for j in range(wo):
                r, c = i * s[0], j * s[1]
                window = xp[
                    :, g * cg : (g + 1) * cg, r : r + d[0] * (kh - 1) + 1 : d[0],
                    c : c + d[1] * (kw - 1) + 1 : d[1],
                ]  # (N, Cg, kh, kw)  # fmt: skip
                y[:, g * og : (g + 1) * og, i, j] = np.einsum("ncuv,ocuv->no", window, wg)
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_naive_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_naive` given ``dy`` (N, C_out, Ho, Wo):
    each output pixel sends ``dy * w`` back to its window and ``dy * window`` to ``w``."""
    _check_conv(x, w, groups, 1)
    s, p, d = pair(stride), pair(padding), pair(dilation)
    kh, kw = w.shape[2:]
    ho, wo = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    dxp = np.zeros_like(xp, dtype=np.result_type(dy, w))
    dw = np.zeros_like(w, dtype=np.result_type(dy, x))
    cg, og = w.shape[1], w.shape[0] // groups
    for g in range(groups):
        cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for i in range(ho):
            for j in range(wo):
                r, c = i * s[0], j * s[1]
                rows = slice(r, r + d[0] * (kh - 1) + 1, d[0])
                cols = slice(c, c + d[1] * (kw - 1) + 1, d[1])
                g_out = dy[:, os_, i, j]  # (N, Og)
                dxp[:, cs, rows, cols] += np.einsum("no,ocuv->ncuv", g_out, w[os_])
                dw[os_] += np.einsum("no,ncuv->ocuv", g_out, xp[:, cs, rows, cols])
    dx = dxp[:, :, p[0] : p[0] + x.shape[2], p[1] : p[1] + x.shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


# --- im2col: every receptive field as a column, then one matrix product ----------------


def im2col(
    x: np.ndarray,
    kernel: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Receptive fields of ``x`` (N, C, H, W) as columns: (N, C, kh, kw, Ho, Wo).

    ``cols[n, c, u, v, i, j] = x_pad[n, c, i s + u d, j s + v d]``; one strided slice per
    kernel offset (u, v), so the loop is kh * kw long, not Ho * Wo. Reshape to
    (N, C kh kw, Ho Wo) for the matrix product. ``pad_value`` is -inf for max pooling.
    """
    k, s, p, d = pair(kernel), pair(stride), pair(padding), pair(dilation)
    ho, wo = _out_hw(x, k, s, p, d)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=pad_value)
    cols = np.empty(x.shape[:2] + k + (ho, wo), dtype=x.dtype)
    for u in range(k[0]):
        for v in range(k[1]):
            r, c = u * d[0], v * d[1]
            cols[:, :, u, v] = xp[:, :, r : r + s[0] * (ho - 1) + 1 : s[0],
                                  c : c + s[1] * (wo - 1) + 1 : s[1]]  # fmt: skip
    return cols


def col2im(
    cols: np.ndarray,
    size: tuple[int, int],
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add (N, C, kh, kw, Ho, Wo) columns back into an
    image of spatial ``size`` (H, W), so overlapping windows sum. -> (N, C, H, W)."""
    s, p, d = pair(stride), pair(padding), pair(dilation)
    n, c, kh, kw, ho, wo = cols.shape
    xp = np.zeros((n, c, size[0] + 2 * p[0], size[1] + 2 * p[1]), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            r, cc = u * d[0], v * d[1]
            xp[:, :, r : r + s[0] * (ho - 1) + 1 : s[0],
               cc : cc + s[1] * (wo - 1) + 1 : s[1]] += cols[:, :, u, v]  # fmt: skip
    return xp[:, :, p[0] : p[0] + size[0], p[1] : p[1] + size[1]]


def _grouped(cols: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, kh, kw, Ho, Wo) -> (N, G, C/G kh kw, Ho Wo)."""
    n, c, kh, kw, ho, wo = cols.shape
    return cols.reshape(n, groups, (c // groups) * kh * kw, ho * wo)


def conv2d_im2col(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> np.ndarray:
    """Convolution as a matrix product per group: ``Y_g = W_g @ cols_g``.
    (N, C_in, H, W) -> (N, C_out, Ho, Wo)."""
    _check_conv(x, w, groups, 1)
    cols = im2col(x, w.shape[2:], stride, padding, dilation)
    ho, wo = cols.shape[-2:]
    wg = w.reshape(groups, w.shape[0] // groups, -1)  # (G, Og, Cg kh kw)
    y = np.einsum("gok,ngkl->ngol", wg, _grouped(cols, groups))  # (N, G, Og, Ho Wo)
    y = y.reshape(x.shape[0], w.shape[0], ho, wo)
    return y if b is None else y + b[None, :, None, None]


def conv2d_im2col_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_im2col`: ``dW_g = dY_g @ cols_g^T`` and
    ``dx = col2im(W_g^T @ dY_g)``."""
    _check_conv(x, w, groups, 1)
    cols = im2col(x, w.shape[2:], stride, padding, dilation)
    n, og = x.shape[0], w.shape[0] // groups
    dyg = dy.reshape(n, groups, og, -1)  # (N, G, Og, Ho Wo)
    wg = w.reshape(groups, og, -1)
    dw = np.einsum("ngol,ngkl->gok", dyg, _grouped(cols, groups)).reshape(w.shape)
    dcols = np.einsum("gok,ngol->ngkl", wg, dyg).reshape(cols.shape)
    dx = col2im(dcols, x.shape[2:], stride, padding, dilation)
    return dx, dw, dy.sum(axis=(0, 2, 3))


# --- transposed convolution: the backward pass of a convolution, used forward -----------


def conv_transpose2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    output_padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed ("fractionally strided") convolution: each input pixel stamps its kernel,
    scaled by the pixel, onto the output at stride s; overlaps add (col2im).

    It is ``dx`` of a convolution with weight ``w`` (C_in, C_out/G, kh, kw), whose output
    size is :func:`conv_transpose_output_size`. (N, C_in, H, W) -> (N, C_out, Ho, Wo).
    """
    _check_conv(x, w, groups, 0)
    s, p, op, d = pair(stride), pair(padding), pair(output_padding), pair(dilation)
    kh, kw = w.shape[2:]
    n, cin, h, wd = x.shape
    size = tuple(
        conv_transpose_output_size((h, wd)[a], (kh, kw)[a], s[a], p[a], op[a], d[a])
        for a in range(2)
    )
    cg, og = cin // groups, w.shape[1]
    xg = x.reshape(n, groups, cg, h * wd)
    wg = w.reshape(groups, cg, og * kh * kw)
    cols = np.einsum("gck,ngcl->ngkl", wg, xg).reshape(n, groups * og, kh, kw, h, wd)
    y = col2im(cols, size, s, p, d)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Pair = 1,
    padding: Pair = 0,
    output_padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose2d`: its adjoint is a plain
    convolution, so ``dx = conv(dy, w)`` through im2col of ``dy``. ``output_padding`` only
    sizes the output, which ``dy`` already has."""
    _check_conv(x, w, groups, 0)
    n, cin, h, wd = x.shape
    kh, kw = w.shape[2:]
    cg, og = cin // groups, w.shape[1]
    dcols = im2col(dy, (kh, kw), stride, padding, dilation)[..., :h, :wd]
    dcols = dcols.reshape(n, groups, og * kh * kw, h * wd)  # (N, G, Og kh kw, H W)
    xg = x.reshape(n, groups, cg, h * wd)
    wg = w.reshape(groups, cg, og * kh * kw)
    dx = np.einsum("gck,ngkl->ngcl", wg, dcols).reshape(x.shape)
    dw = np.einsum("ngcl,ngkl->gck", xg, dcols).reshape(w.shape)
    return dx, dw, dy.sum(axis=(0, 2, 3))
