"""Int8 quantization for CPU inference: post-training static, dynamic (Linear), and QAT.

- Static (PTQ): weights and activations int8. ``torch.fx`` traces the model, fuses
  conv-BN-ReLU, inserts observers, the calibration batches set each activation's scale and
  zero point (``x_q = round(x / s) + z``), and ``convert`` swaps in int8 kernels
  (fbgemm/x86 or qnnpack). Weights are per-channel symmetric, activations per-tensor affine.
- Dynamic: only ``nn.Linear`` weights are int8; activations are quantized on the fly per
  batch — for Linear-heavy models (ViT heads, MLPs), no calibration.
- QAT: the fx-prepared model carries fake-quant modules so training sees int8 rounding;
  :func:`convert_qat` turns the trained model into the int8 one.

This is torch's FX graph mode (``torch.ao.quantization``), which torch 2.14 still ships
but marks deprecated in favour of torchao's PT2E flow; torchao is not a dependency here,
so the deprecation notices are silenced inside these functions. Quantized models run on
the CPU only and take and return float tensors (the quant/dequant stubs are in the graph).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError

BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")


@contextmanager
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*deprecated")
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"backend={name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in torch.backends.quantized.supported_engines:
        raise ConfigError(
            f"backend={name!r} is not built into this torch "
            f"(available: {', '.join(torch.backends.quantized.supported_engines)})"
        )
    torch.backends.quantized.engine = name
    return name


def _fx(fn: Any, model: nn.Module, *args: Any) -> Any:
    try:
        return fn(model, *args)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"int8 quantization traces {type(model).__name__} with torch.fx and failed "
            f"({type(e).__name__}: {str(e)[:160]}); use mode=dynamic (Linear layers only)"
        ) from e


@torch.no_grad()
def quantize_static(
    model: nn.Module,
    calibration: Iterable[torch.Tensor],
    backend: str = "x86",
    example: torch.Tensor | None = None,
) -> nn.Module:
    """Post-training static int8 model from ``model`` (left untouched) and calibration
    input batches (B, C, H, W) as the model takes them (already normalised)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    backend = _backend(backend)
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ConfigError("quantize_static needs at least one calibration batch")
    with _quiet():
        prepared = _fx(
            prepare_fx,
            copy.deepcopy(model).eval(),
            get_default_qconfig_mapping(backend),
            (example if example is not None else first,),
        )
        prepared(first)
        for x in batches:  # observers record each activation's range
            prepared(x)
        return _fx(convert_fx, prepared)


def quantize_dynamic_linear(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers run int8 weights, activations
    quantized per batch at run time."""
    from torch.ao.quantization import quantize_dynamic

    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ConfigError(
            f"mode=dynamic quantizes nn.Linear layers and {type(model).__name__} has none; "
            "use mode=static"
        )
    with _quiet():
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def prepare_qat(model: nn.Module, example: torch.Tensor, backend: str = "x86") -> nn.Module:
    """A trainable copy of ``model`` with fake quantization (conv-BN kept foldable), to
    fine-tune for a few epochs and then pass to :func:`convert_qat`."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    backend = _backend(backend)
    with _quiet():
        return _fx(
            prepare_qat_fx,
            copy.deepcopy(model).train(),
            get_default_qat_qconfig_mapping(backend),
            (example,),
        )


def convert_qat(model: nn.Module) -> nn.Module:
    """The int8 inference model from a QAT-trained :func:`prepare_qat` model."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        return _fx(convert_fx, copy.deepcopy(model).eval())


def quantized_modules(model: nn.Module) -> list[str]:
    """Names of the modules that run int8 kernels (``torch.ao.nn.quantized*`` classes)."""
    int8 = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
    return [
        n
        for n, m in model.named_modules()
        if type(m).__module__.startswith(int8) and not type(m).__name__.endswith("PackedParams")
    ]
