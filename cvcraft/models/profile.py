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
    rf: bool = False,
) -> dict[str, Any]:
    """Parameters, MACs, FLOPs (= 2 x MACs) and, optionally, CPU latency of ``model``.

    Returns ``{"params", "macs", "flops", "macs_by_kind", "latency_ms"}`` for a
    (batch, *input_size) input; MACs are counted on the meta device (:func:`count_macs`),
    latency is the median of ``reps`` real forwards (``None`` when ``latency=False``).
    ``rf=True`` adds ``"receptive_field"``: the per-layer rows of :func:`receptive_fields`.
    """
    if len(input_size) < 1:
        raise ConfigError(f"input_size must be (C, H, W)-like, got {tuple(input_size)}")
    by_kind = count_macs(model, input_size, batch)
    macs = by_kind.pop("total")
    out = {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs,
        "flops": 2 * macs,
        "macs_by_kind": by_kind,
        "latency_ms": measure_latency(model, input_size, batch, warmup, reps) if latency else None,
    }
    if rf:
        out["receptive_field"] = receptive_fields(model, input_size)
    return out


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


# ----------------------------------------------------------------------------- receptive field
# Ops whose output pixel reads a k x k window: conv and pooling (aten argument positions).
_WINDOW_OPS = {
    _aten.convolution: "conv",
    _aten._convolution: "conv",
    _aten.max_pool2d_with_indices: "maxpool",
    _aten.max_pool2d: "maxpool",
    _aten.avg_pool2d: "avgpool",
}
_GLOBAL_OPS = (_aten._adaptive_avg_pool2d, _aten.adaptive_max_pool2d, _aten.mean)


def _pair(v: Any, default: Any = None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return (int(v[0]), int(v[-1]))


def _window(func: Any, args: tuple) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding, dilation) per axis of a conv/pool aten call."""
    kind = _WINDOW_OPS[func.overloadpacket]
    if kind == "conv":
        if args[6]:  # transposed: upsamples; not a window of the input grid
            raise NotImplementedError("transposed convolution")
        return _pair(args[1].shape[2:]), _pair(args[3]), _pair(args[4]), _pair(args[5])
    kernel = _pair(args[1])
    stride = _pair(args[2] if len(args) > 2 else None, kernel)
    padding = _pair(args[3] if len(args) > 3 else 0)
    dilation = _pair(args[4] if kind == "maxpool" and len(args) > 4 else 1)
    return kernel, stride, padding, dilation


class _FieldTracer(TorchDispatchMode):
    """Carries (rf, jump, start) per axis on every 4-d feature tensor through the aten ops.

    rf: input pixels one output pixel sees; jump: input pixels between neighbouring output
    pixels; start: input coordinate of the first output pixel's field centre. A conv or
    pool maps ``rf += d (k - 1) jump``, ``start += (d (k - 1) / 2 - p) jump``,
    ``jump *= s``; an op with several feature inputs (a residual add, a concat) takes the
    widest field; a global pool ends the tracking.
    """

    def __init__(self) -> None:
        super().__init__()
        from torch.utils.weak import WeakTensorKeyDictionary

        self.info = WeakTensorKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        ins = [self.info[a] for a in args if isinstance(a, torch.Tensor) and a in self.info]
        for a in args:  # concatenation passes a list of tensors
            if isinstance(a, (list, tuple)):
                ins += [self.info[t] for t in a if isinstance(t, torch.Tensor) and t in self.info]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not ins or packet in _GLOBAL_OPS:
            return out
        if packet in _WINDOW_OPS:
            (rf, jump, start), new = ins[0], []
            for ax, (k, s, p, d) in enumerate(zip(*_window(func, args))):
                new.append((rf[ax] + d * (k - 1) * jump[ax],
                            jump[ax] * s,
                            start[ax] + (d * (k - 1) / 2 - p) * jump[ax]))  # fmt: skip
            field = tuple(tuple(v[i] for v in new) for i in range(3))
        else:
            field = max(ins, key=lambda f: (f[0][0] * f[0][1], f[1]))
        spatial = outs[0].shape[-2:] if isinstance(outs[0], torch.Tensor) else None
        for o in outs:
            if isinstance(o, torch.Tensor) and o.dim() == 4 and o.shape[-2:] == spatial:
                self.info[o] = field
        return out


def receptive_fields(
    model: nn.Module, input_size: Sequence[int] = (3, 224, 224)
) -> list[dict[str, Any]]:
    """Theoretical receptive field and stride (jump) after every module, in forward order.

    One row per module whose output is a feature map: ``name``, ``type``, ``shape`` (C, H,
    W), ``leaf`` (no child modules), ``rf`` (h, w) input pixels, ``jump`` (h, w) input
    pixels between adjacent outputs (the stride of that map), ``start`` (y, x) input
    coordinate of the first output's field centre (negative: it reaches into the padding).
    Traced on the meta device through conv and pooling ops, so branches (residual adds,
    concatenations) are followed and the widest path counts; a global pool ends the field
    (later rows are omitted).
    """
    if len(input_size) != 3:
        raise ConfigError(f"receptive field needs input_size (C, H, W), got {tuple(input_size)}")
    meta = model if _on_meta(model) else _meta_copy(model)
    was_training = meta.training
    meta.eval()
    tracer = _FieldTracer()
    rows: list[dict[str, Any]] = []
    names = {m: n for n, m in meta.named_modules()}

    def record(m: nn.Module, inp: tuple, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out in tracer.info and m is not meta:
            rf, jump, start = tracer.info[out]
            rows.append({"name": names[m], "type": type(m).__name__,
                         "shape": tuple(out.shape[1:]), "rf": rf, "jump": jump,
                         "start": start, "leaf": next(m.children(), None) is None})  # fmt: skip

    handles = [m.register_forward_hook(record) for m in meta.modules()]
    x = torch.empty(1, *input_size, device="meta")
    try:
        with torch.no_grad(), tracer:
            x = x.clone()  # a tensor created inside the mode, so it can be tagged
            tracer.info[x] = ((1, 1), (1, 1), (0.0, 0.0))
            meta(x)
    finally:
        for h in handles:
            h.remove()
        meta.train(was_training)
    return rows


def stage_receptive_fields(
    model: nn.Module, input_size: Sequence[int] = (3, 224, 224)
) -> list[dict[str, Any]]:
    """The :func:`receptive_fields` rows of the model's ``feature_info`` taps (its stages:
    ResNet's stem and layer1-4, VGG's ReLUs before each pool), or every row without them."""
    rows = receptive_fields(model, input_size)
    taps = [d["module"] for d in getattr(model, "feature_info", [])]
    if not taps:
        return rows
    last = {r["name"]: r for r in rows}  # a module called twice keeps its last call
    return [last[t] for t in taps if t in last]


def effective_receptive_field(
    model: nn.Module,
    input_size: Sequence[int] = (3, 224, 224),
    layer: str | None = None,
    samples: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """Effective receptive field (Luo et al. 2016): ``|d y_centre / d x|`` summed over
    channels, averaged over ``samples`` random inputs, normalised to max 1; (H, W).

    ``y_centre`` is the sum over channels of the centre pixel of ``layer``'s output (a
    module name; default the model's output if it is a map). The theoretical field bounds
    it; in practice it is roughly Gaussian and much smaller.
    """
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        raise ConfigError(
            f"layer={layer!r} is not a module of the model (e.g. {list(modules)[1:4]})"
        )
    captured: list[torch.Tensor] = []
    hook = (
        modules[layer].register_forward_hook(lambda m, i, o: captured.append(o)) if layer else None
    )
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(input_size[-2:])
    try:
        for _ in range(samples):
            captured.clear()
            x = torch.randn(1, *input_size, generator=g).to(device).requires_grad_()
            y = model(x)
            y = captured[-1] if layer else y
            if not isinstance(y, torch.Tensor) or y.dim() != 4:
                raise ConfigError(
                    "effective receptive field needs a (B, C, H, W) map; name a layer="
                )
            y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
            total += x.grad[0].abs().sum(0).cpu()
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    return total / total.max().clamp(min=1e-30)


def format_receptive_fields(rows: list[dict[str, Any]], compact: bool = True) -> str:
    """A text table of :func:`receptive_fields` rows (what ``cvcraft models NAME rf=true``
    prints); ``compact`` keeps the layers that grow the field (conv, pool) and the blocks
    and stages around them, leaving out norms and activations."""
    lines = [f"{'layer':<36} {'type':<18} {'output':<16} {'rf':>11} {'jump':>9}"]
    for r in rows:
        if compact and r["leaf"] and not any(k in r["type"] for k in ("Conv", "Pool")):
            continue
        rf = r["rf"][0] if r["rf"][0] == r["rf"][1] else f"{r['rf'][0]}x{r['rf'][1]}"
        jump = r["jump"][0] if r["jump"][0] == r["jump"][1] else f"{r['jump'][0]}x{r['jump'][1]}"
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"{r['name']:<36} {r['type']:<18} {shape:<16} {rf!s:>11} {jump!s:>9}")
    return "\n".join(lines)
