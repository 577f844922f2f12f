"""Export a model to ONNX or TorchScript, check the export against eager PyTorch, and run
an ONNX file like a model.

ONNX uses torch's TorchScript-based exporter (``dynamo=False``): it exports every cvcraft
model in about a second, where the dynamo exporter takes several times longer. With
``dynamic=True`` the batch axis is symbolic, so one file serves any batch size.
:class:`OnnxModel` wraps an onnxruntime session as an ``nn.Module`` — callable on a float
NCHW tensor, returning tensors — so evaluation and prediction code can take
``weights=model.onnx`` unchanged. Parity: ``|exported - eager| <= atol + rtol |eager|``
with ``atol = 1e-4 + 1e-5 * max|eager|`` (float32 reordering error grows with the scale of
the outputs) and ``rtol = 1e-4``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.errors import ConfigError

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "cvcraft"  # ONNX metadata_props key / TorchScript extra file (cvcraft.json)
DEFAULT_OPSET = 17
MIN_OPSET = 9
PARITY_RTOL = 1e-4


def _outputs(out: Any) -> tuple[torch.Tensor, ...]:
    """A model's output as a flat tuple of tensors (tensor, tuple/list or dict of them)."""
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return tuple(out)
    raise ConfigError(
        f"export needs a model returning tensors; it returned {type(out).__name__} "
        "(wrap the model so forward returns a tensor or a tuple of tensors)"
    )


def _max_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET

        return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except Exception:  # private constant moved: let the exporter judge
        return 99


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike | io.BytesIO,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
    input_name: str = "images",
    output_names: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[str]:
    """Write ``model`` (eval mode) traced on ``example`` (B, C, H, W) to ONNX at ``path``;
    returns the output names (``logits`` for one output, ``output0..`` for several).
    ``metadata`` (JSON-able, e.g. classes and normalisation) goes into the file's
    ``metadata_props`` under the key ``cvcraft``; :attr:`OnnxModel.metadata` reads it."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as e:
        raise ConfigError("format=onnx needs the onnx package: pip install onnx") from e
    if not MIN_OPSET <= opset <= _max_opset():
        raise ConfigError(f"opset={opset} must be in [{MIN_OPSET}, {_max_opset()}]")
    model = model.eval()
    with torch.no_grad():
        n_out = len(_outputs(model(example)))
    names = output_names or (["logits"] if n_out == 1 else [f"output{i}" for i in range(n_out)])
    axes = None
    if dynamic:
        axes = {input_name: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    target = str(path) if isinstance(path, (str, os.PathLike)) else path
    from torch.onnx.errors import UnsupportedOperatorError

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation / tracer notes
            torch.onnx.export(
                model, (example,), target, dynamo=False, opset_version=opset,
                input_names=[input_name], output_names=names, dynamic_axes=axes,
            )  # fmt: skip
    except UnsupportedOperatorError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(
            f"{type(model).__name__} cannot be exported to ONNX: {first}; try a higher "
            f"opset= (max {_max_opset()}) or format=torchscript"
        ) from e
    if metadata:
        _add_onnx_metadata(target, metadata)
    return names


def _add_onnx_metadata(target: str | io.BytesIO, metadata: dict[str, Any]) -> None:
    import onnx

    proto = (
        onnx.load(target) if isinstance(target, str) else onnx.load_from_string(target.getvalue())
    )
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    if isinstance(target, str):
        onnx.save(proto, target)
    else:
        target.seek(0)
        target.truncate()
        target.write(proto.SerializeToString())


def export_torchscript(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> torch.jit.ScriptModule:
    """Trace ``model`` (eval mode) on ``example`` and save the TorchScript module, with
    ``metadata`` as the extra file ``cvcraft.json`` (:func:`torchscript_metadata`)."""
    try:
        # tracing a quantized model runs kernels without a deterministic variant; a process
        # that trained with deterministic=true must still be able to export
        was = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(model.eval(), example, check_trace=False)
        finally:
            torch.use_deterministic_algorithms(was)
    except Exception as e:
        raise ConfigError(
            f"{type(model).__name__} cannot be traced to TorchScript ({type(e).__name__}: "
            f"{str(e)[:160]}); try format=onnx"
        ) from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        extra = {f"{METADATA_KEY}.json": json.dumps(metadata or {})}
        torch.jit.save(traced, str(path), _extra_files=extra)
    return traced


def torchscript_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` saved by :func:`export_torchscript` ({} if none)."""
    extra = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[f"{METADATA_KEY}.json"] or "{}")


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU (TorchScript files are code: load only files you trust)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


class OnnxModel(nn.Module):
    """An ONNX file run by onnxruntime (CPU), behaving like the model it was exported from:
    ``OnnxModel("m.onnx")(x)`` takes a float (B, C, H, W) tensor and returns a tensor (a
    tuple for several outputs). A file exported with a fixed batch size still takes any
    batch: it is run in chunks of that size (the last chunk padded, then cut)."""

    def __init__(self, path: str | os.PathLike | bytes, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ConfigError("ONNX weights need onnxruntime: pip install onnxruntime") from e
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        src = path if isinstance(path, bytes) else str(path)
        try:
            self.session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            where = "the given bytes" if isinstance(path, bytes) else str(path)
            raise ConfigError(f"{where}: not a loadable ONNX model ({e})") from e
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        fixed = inp.shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) else None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = json.loads(props.get(METADATA_KEY, "{}"))

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        n = self.fixed_batch
        if n is None or arr.shape[0] == n:
            outs = self._run(arr)
        else:
            parts = []
            for s in range(0, arr.shape[0], n):
                chunk = arr[s : s + n]
                pad = n - chunk.shape[0]
                if pad:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
                parts.append([o[: n - pad] for o in self._run(chunk)])
            outs = [np.concatenate(p) for p in zip(*parts)]
        tensors = tuple(torch.from_numpy(o).to(x.device) for o in outs)
        return tensors[0] if len(tensors) == 1 else tensors


def parity(reference: Any, candidate: Any, rtol: float = PARITY_RTOL) -> dict[str, Any]:
    """Compare two model outputs: max absolute difference, the tolerance used and whether
    every output is within it (see the module docstring for the tolerance)."""
    ref, got = _outputs(reference), _outputs(candidate)
    if len(ref) != len(got):
        return {"ok": False, "max_abs_diff": float("inf"), "atol": 0.0, "rtol": rtol}
    worst, ok, atol_used = 0.0, True, 0.0
    for r, g in zip(ref, got):
        r, g = r.detach().float().cpu(), g.detach().float().cpu()
        if r.shape != g.shape:
            return {"ok": False, "max_abs_diff": float("inf"), "atol": 0.0, "rtol": rtol}
        atol = 1e-4 + 1e-5 * max(1.0, float(r.abs().max()) if r.numel() else 0.0)
        diff = (g - r).abs()
        ok = ok and bool((diff <= atol + rtol * r.abs()).all())
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        atol_used = max(atol_used, atol)
    return {"ok": ok, "max_abs_diff": worst, "atol": atol_used, "rtol": rtol}


def export_model(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    fmt: str = "onnx",
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
    check: torch.Tensor | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export and verify: write ``path``, load it back (onnxruntime / ``torch.jit.load``),
    run it on ``check`` (default ``example``; with ``dynamic`` use another batch size) and
    compare with eager. Returns ``{"path", "format", "bytes", **parity}``."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if fmt == "onnx":
        export_onnx(model, example, path, opset=opset, dynamic=dynamic, metadata=metadata)
        runner: Any = OnnxModel(path)
    else:
        export_torchscript(model, example, path, metadata)
        runner = load_torchscript(path)
    x = example if check is None else check
    with torch.no_grad():
        report = parity(model(x), runner(x))
    return {"path": str(path), "format": fmt, "bytes": path.stat().st_size, **report}
