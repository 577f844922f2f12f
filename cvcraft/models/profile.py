"""Model cost: parameters, multiply-accumulates (MACs) and CPU latency.

Convention: one MAC is one ``a * b + c``; FLOPs = 2 x MACs. Papers that say "FLOPs" for
CNNs usually mean MACs (He et al.'s "3.8 GFLOPs" for ResNet-50 is ~4.1 G MACs counted in
full; torchvision lists 4.09 "GFLOPS", also MACs).

What is counted (per forward pass, all of it on the ``meta`` device, so no arithmetic is
done and even huge models count in milliseconds):

- ``conv``: Conv/ConvTranspose modules, ``out_elements * C_in/groups * prod(kernel)``
  (transposed: ``in_elements * C_out/groups * prod(kernel)``).
- ``linear``: ``rows * in_features * out_features``.
- ``bias``: one addition per output element of a Conv/Linear module with a bias (as
  ptflops counts; matmul-only counters leave it out).
- ``matmul``: any mm / bmm / addmm / baddbmm / convolution / scaled-dot-product attention
  reached *outside* the hooked modules above — attention's ``Q K^T`` and ``A V``,
  ``nn.MultiheadAttention``'s functional projections, ``F.conv2d`` calls — counted at the
  aten level by a :class:`~torch.utils._python_dispatch.TorchDispatchMode`. SDPA is
  ``B*nh*Lq*Lk*(E + Ev)`` MACs (the softmax is not counted); addmm's added bias is not.
- ``norm``: BatchNorm/LayerNorm/GroupNorm/InstanceNorm, 1 per element to normalise + 1
  more if affine (as ptflops does; at inference BatchNorm folds into the conv, so this is
  an upper bound).
- ``act``: ReLU-family, GELU, SiLU, Hardswish, Sigmoid... 1 per output element.
- ``pool``: max/avg pooling (adaptive too), 1 per *input* element (as ptflops).

Not counted: residual additions, softmax, elementwise ops written as tensor arithmetic.
``macs`` is the total; ``macs_by_kind`` splits it so e.g. ``conv + linear + matmul`` can be
compared with matmul-only counters like ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cvcraft.errors import ConfigError
from cvcraft.models.registry import create_model

KINDS = ("conv", "linear", "matmul", "bias", "norm", "act", "pool")

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
          nn.modules.instancenorm._InstanceNorm)  # fmt: skip
_ACTS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish,
         nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Mish)  # fmt: skip
_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
          nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)  # fmt: skip

_aten = torch.ops.aten
# Fused attention kernels (which exist depends on the torch build); the math fallback
# decomposes into bmm and is counted there.
_SDPA_OPS = tuple(
    getattr(_aten, n)
    for n in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )
    if hasattr(_aten, n)
)


def _conv_macs(m: nn.modules.conv._ConvNd, inp: torch.Tensor, out: torch.Tensor) -> int:
    k = math.prod(m.kernel_size)
    if m.transposed:  # each input element scatters C_out/groups * k products
        return inp.numel() * (m.out_channels // m.groups) * k
    return out.numel() * (m.in_channels // m.groups) * k  # each output gathers C_in/g * k


def _module_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
    """{kind: MACs} of one call of a leaf module we know; {} for any other module."""
    if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
        if isinstance(m, nn.Linear):
            macs = {"linear": out.numel() // m.out_features * m.in_features * m.out_features}
        else:
            macs = {"conv": _conv_macs(m, inp, out)}
        if m.bias is not None:
            macs["bias"] = out.numel()
        return macs
    if isinstance(m, _NORMS):
        affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
        return {"norm": out.numel() * (2 if affine else 1)}
    if isinstance(m, _ACTS):
        return {"act": out.numel()}
    if isinstance(m, _POOLS):
        return {"pool": inp.numel()}
    return {}


def _sdpa_macs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    batch = math.prod(q.shape[:-2])  # (..., Lq, E) x (..., Lk, E) x (..., Lk, Ev)
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _conv_aten_macs(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, transposed: bool):
    k = math.prod(w.shape[2:])
    if transposed:  # weight (C_in, C_out/g, *k)
        return x.numel() * w.shape[1] * k
    return out.numel() * w.shape[1] * k  # weight (C_out, C_in/g, *k)


class _MatmulCounter(TorchDispatchMode):
    """Counts matmul-family aten ops run while no hooked leaf module is active."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.suspended = 0  # > 0 inside a Conv/Linear whose hook counts it already

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.suspended:
            return out
        packet = func.overloadpacket
        if packet in (_aten.mm, _aten.bmm):
            a, b = args[0], args[1]
            self.macs += a.numel() * b.shape[-1]
        elif packet in (_aten.addmm, _aten.baddbmm):
            a, b = args[1], args[2]
            self.macs += a.numel() * b.shape[-1]
        elif packet in (_aten.convolution, _aten._convolution):
            self.macs += _conv_aten_macs(args[0], args[1], out, bool(args[6]))
        elif packet in _SDPA_OPS:
            self.macs += _sdpa_macs(args[0], args[1], args[2])
        return out


def _meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers live on ``meta``."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


@torch.no_grad()
def count_macs(
    model: nn.Module, input_size: Sequence[int] = (3, 224, 224), batch: int = 1
) -> dict[str, int]:
    """MACs of one forward pass of ``model`` on a (batch, *input_size) input, by kind.

    Runs on a meta-device copy of the model (the original is untouched). Returns
    ``{"conv", "linear", "matmul", "bias", "norm", "act", "pool", "total"}`` (ints); see
    the module docstring for what each kind counts.
    """
    meta = model if _on_meta(model) else _meta_copy(model)
    was_training = meta.training
    meta.eval()  # dropout / BN statistics must not change what runs
    counts = dict.fromkeys(KINDS, 0)
    counter = _MatmulCounter()

    def count(m: nn.Module, inp: tuple, out: Any) -> None:
        x = inp[0] if inp else None
        if isinstance(out, torch.Tensor) and isinstance(x, torch.Tensor):
            for kind, n in _module_macs(m, x, out).items():
                counts[kind] += n

    def enter(m: nn.Module, inp: tuple) -> None:
        counter.suspended += 1

    def leave(m: nn.Module, inp: tuple, out: Any) -> None:
        counter.suspended -= 1
        count(m, inp, out)

    handles = []
    for m in meta.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            # The hook counts these from shapes; pause the aten counter inside so their
            # mm/convolution is not counted twice.
            handles.append(m.register_forward_pre_hook(enter))
            handles.append(m.register_forward_hook(leave))
        elif isinstance(m, _NORMS + _ACTS + _POOLS):
            handles.append(m.register_forward_hook(count))
    try:
        with counter:
            meta(torch.empty(batch, *input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
        meta.train(was_training)
    counts["matmul"] += counter.macs
    counts["total"] = sum(counts[k] for k in KINDS)
    return counts


def _on_meta(model: nn.Module) -> bool:
    p = next(iter(model.parameters()), None)
    return p is not None and p.device.type == "meta"


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_size: Sequence[int] = (3, 224, 224),
    batch: int = 1,
    warmup: int = 2,
    reps: int = 5,
) -> float:
    """Median wall time in ms of ``reps`` eval forwards on a random CPU batch (after warm-up)."""
    if reps < 1:
        raise ConfigError(f"latency reps must be >= 1, got {reps}")
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.randn(batch, *input_size, device=device)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    model.train(was_training)
    return statistics.median(times)


def profile(
    model: nn.Module,
    input_size: Sequence[int] = (3, 224, 224),
    *,
    batch: int = 1,
    latency: bool = True,
    warmup: int = 2,
    reps: int = 5,
) -> dict[str, Any]:
    """Parameters, MACs, FLOPs (= 2 x MACs) and, optionally, CPU latency of ``model``.

    Returns ``{"params", "macs", "flops", "macs_by_kind", "latency_ms"}`` for a
    (batch, *input_size) input; MACs are counted on the meta device (:func:`count_macs`),
    latency is the median of ``reps`` real forwards (``None`` when ``latency=False``).
    """
    if len(input_size) < 1:
        raise ConfigError(f"input_size must be (C, H, W)-like, got {tuple(input_size)}")
    by_kind = count_macs(model, input_size, batch)
    macs = by_kind.pop("total")
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs,
        "flops": 2 * macs,
        "macs_by_kind": by_kind,
        "latency_ms": measure_latency(model, input_size, batch, warmup, reps) if latency else None,
    }


def _build_on_meta(name: str, **kw: Any) -> nn.Module:
    """Build a registered model without allocating its weights (meta device) when possible."""
    try:
        with torch.device("meta"):
            return create_model(name, **kw)
    except Exception:  # a constructor that needs real values (e.g. .item()) builds on CPU
        return create_model(name, **kw)


def model_table(
    names: Sequence[str],
    input_size: Sequence[int] | None = None,
    *,
    latency: bool = False,
    batch: int = 1,
) -> list[dict[str, Any]]:
    """One row per registered model: name, input size, params, GMACs, GFLOPs (latency opt.).

    Models are built on the meta device, so the table costs milliseconds per model;
    ``input_size=None`` uses each model's ``default_input_size``.
    """
    rows = []
    for name in names:
        model = create_model(name) if latency else _build_on_meta(name)
        size = tuple(input_size or getattr(model, "default_input_size", (3, 224, 224)))
        res = profile(model, size, batch=batch, latency=latency)
        rows.append({
            "name": name,
            "input_size": size,
            "params": res["params"],
            "gmacs": res["macs"] / 1e9,
            "gflops": res["flops"] / 1e9,
            "latency_ms": res["latency_ms"],
        })  # fmt: skip
    return rows
