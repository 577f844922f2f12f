"""What the model tools (``cvcraft explain | attack | prune | quantize | export``) share:
loading a checkpoint or an exported file with its metadata, the validation data as the run
split it, ``key=value`` parsing, and result tables.

Each command lives in its own module (``explain_tool``, ``attack_tool``, ``compress_tool``,
``export_tool``) with a ``XXX_KEYS`` dict (key -> help) and a ``run_xxx(args)`` runner taking
the command line's ``key=value`` strings; they write pictures, tables and files into ``out``.
Pruned checkpoints record their widths (``pruned``) and are rebuilt by
:func:`load_classifier_any`; ONNX / TorchScript files carry the checkpoint's metadata.
"""

from __future__ import annotations

import io
import json
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.data import ClassifyDataset, build_loader, load_classification
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.errors import CheckpointError, ConfigError

# The classification task's pieces, imported in this one place.
from cvcraft.tasks.classify.task import ClassifyTask, evaluate_classifier
from cvcraft.tasks.registry import get_task
from cvcraft.transforms import default_classify_transforms
from cvcraft.transforms.normalize import Preprocess

META_KEYS = ("task", "model_name", "num_classes", "in_chans", "classes", "imgsz", "model_kwargs",
             "normalize", "norm_stats", "pruned", "category_ids", "resize", "size_divisor",
             "ignore_index")  # fmt: skip


# -- argument parsing ----------------------------------------------------------------------
def parse_number(text: str, key: str) -> float:
    """``"0.03"`` or a fraction ``"8/255"`` -> float; a ConfigError naming ``key`` if neither."""
    try:
        return float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key}={text!r} is not a number (examples: 0.03, 8/255)") from None


def parse_numbers(text: str, key: str) -> list[float]:
    return [parse_number(t, key) for t in str(text).split(",") if t.strip()]


def parse_bool(text: str | bool, key: str) -> bool:
    v = str(text).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{key}={text!r}: use true or false")


def int_arg(args: dict[str, str], key: str, default: int, minimum: int = 0) -> int:
    try:
        v = int(args.get(key, default))
    except ValueError:
        raise ConfigError(f"{key}={args[key]!r} must be an integer") from None
    if v < minimum:
        raise ConfigError(f"{key}={v} must be >= {minimum}")
    return v


def out_dir(args: dict[str, str], command: str) -> Path:
    out = Path(args.get("out") or f"runs/{command}")
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- models ----------------------------------------------------------------------------------
def checkpoint_metadata(state: dict[str, Any]) -> dict[str, Any]:
    """What inference needs from a checkpoint (classes, input size, normalisation...),
    JSON-able, as embedded in exported files."""

    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor | np.ndarray):
            return v.tolist()
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return {k: plain(state[k]) for k in META_KEYS if k in state}


def load_classifier_any(weights: str | Path, device: torch.device) -> tuple[nn.Module, dict]:
    """A classifier and its metadata from a cvcraft checkpoint (pruned ones included), an
    ONNX file (run by onnxruntime) or a TorchScript file written by ``cvcraft export`` /
    ``quantize``. ONNX/TorchScript models run on the CPU."""
    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"weights={weights}: no such file")
    return ClassifyTask.load_model(path, device)


def load_task_model(weights: str | Path, device: torch.device) -> tuple[str, nn.Module, dict]:
    """(task, model, metadata) of any checkpoint: classifiers through
    :func:`load_classifier_any` (exported files included), detectors and segmenters through
    their registered task's ``load_model``."""
    path = Path(weights)
    if path.suffix == ".pt" and path.exists():
        state = load_checkpoint(path)
        task = state.get("task", "classify")
        if task != "classify":
            model, state = get_task(task).load_class().load_model(path, device)
            return task, model, state
    model, meta = load_classifier_any(path, device)
    return str(meta.get("task", "classify")), model, meta


def preprocess_of(meta: dict[str, Any], device: torch.device) -> Preprocess:
    """uint8-range batch -> the model's input, from the checkpoint's normalisation."""
    return Preprocess(meta.get("norm_stats"), meta.get("normalize", "none"), meta["in_chans"]).to(
        device
    )


def val_transform(meta: dict[str, Any]) -> Any:
    return default_classify_transforms(int(meta.get("imgsz", 224)), train=False)


def val_split(meta: dict[str, Any], data: str) -> Any:
    """The validation split of ``data`` as the run made it (its seed and val_fraction)."""
    cfg = meta.get("config") or {}
    splits = load_classification(
        data, val_fraction=float(cfg.get("val_fraction", 0.1)), seed=int(cfg.get("seed", 0)),
        imgsz_hint=int(meta.get("imgsz", 32)),
    )  # fmt: skip
    if list(splits.classes) != list(meta["classes"]):
        raise CheckpointError(
            f"the checkpoint was trained on classes {list(meta['classes'])[:10]}, but "
            f"data={data} has {list(splits.classes)[:10]}; use data with the same classes"
        )
    return splits.val


def val_loader(meta: dict[str, Any], data: str, n: int, batch: int) -> Any:
    val = val_split(meta, data)
    if n and n < len(val):  # an evenly spread, deterministic subset
        val = val.subset(np.linspace(0, len(val) - 1, n).round().astype(np.int64))
    ds = ClassifyDataset(val, val_transform(meta), seed=0)
    return build_loader(ds, batch, shuffle=False, workers=0, seed=0)


def accuracy(model: nn.Module, loader: Any, pre: nn.Module, meta: dict, device) -> float:
    return float(evaluate_classifier(model, loader, pre, meta["num_classes"], device)["top1"])


def state_dict_bytes(model: nn.Module) -> tuple[int, int]:
    """(state_dict bytes, zlib-compressed bytes): sparsity shows in the second."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    raw = buf.getvalue()
    return len(raw), len(zlib.compress(raw, 6))


def write_table(out: Path, name: str, rows: list[dict[str, Any]]) -> None:
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    (out / f"{name}.csv").write_text("\n".join(lines) + "\n")


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    cells = [[f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
