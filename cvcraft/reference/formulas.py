"""Convolution arithmetic: output sizes and the receptive field of a stack of layers.

Output size along one axis (Dumoulin & Visin 2016, "A guide to convolution arithmetic"):
``out = floor((n + 2p - d(k - 1) - 1) / s) + 1``; transposed convolution inverts it,
``out = (n - 1) s - 2p + d(k - 1) + output_padding + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cvcraft.errors import ConfigError


def _check(kernel: int, stride: int, padding: int, dilation: int) -> None:
    if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ConfigError(
            f"conv arithmetic needs kernel, stride, dilation >= 1 and padding >= 0; got "
            f"kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}"
        )


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution or pooling window along one axis.

    ``floor((n + 2p - d(k - 1) - 1) / s) + 1``: ``d(k - 1) + 1`` is the dilated kernel's
    extent, and the window fits ``(n + 2p - extent) // s`` more times after the first.
    """
    _check(kernel, stride, padding, dilation)
    extent = dilation * (kernel - 1) + 1
    if size + 2 * padding < extent:
        raise ConfigError(
            f"input length {size} + 2*padding {padding} is shorter than the dilated kernel "
            f"extent {extent}; pad more or use a smaller kernel/dilation"
        )
    return (size + 2 * padding - extent) // stride + 1


def conv_transpose_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one axis.

    ``(n - 1) s - 2p + d(k - 1) + output_padding + 1``: the length a convolution with the
    same parameters would map back to ``n``; ``output_padding < s`` picks among the ``s``
    lengths that do so.
    """
    _check(kernel, stride, padding, dilation)
    if not 0 <= output_padding < max(stride, dilation):
        raise ConfigError(
            f"output_padding={output_padding} must be in [0, max(stride, dilation)) = "
            f"[0, {max(stride, dilation)})"
        )
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def receptive_field(layers: Sequence[tuple[int, int] | tuple[int, int, int]]) -> tuple[int, int]:
    """Receptive field and jump (input pixels between adjacent outputs) of a layer stack.

    ``layers`` lists ``(kernel, stride)`` or ``(kernel, stride, dilation)`` from the input
    up. Recurrence: ``r_l = r_{l-1} + d_l (k_l - 1) j_{l-1}``, ``j_l = j_{l-1} s_l``,
    starting from ``r_0 = j_0 = 1``. Padding shifts the field but does not change its size.
    """
    rf, jump = 1, 1
    for layer in layers:
        k, s = layer[0], layer[1]
        d = layer[2] if len(layer) > 2 else 1
        _check(k, s, 0, d)
        rf += d * (k - 1) * jump
        jump *= s
    return rf, jump
