"""Typed run configuration: the keys every task shares, and the machinery that reads a
YAML file plus ``key=value`` overrides and validates them before any work.

Each task has a dataclass whose fields are the keys the CLI accepts; a field's metadata
carries its help text and, where it has one, the set of allowed values. Values given as
strings (from the command line) are parsed with YAML's scalar rules (``true``, ``0.1``,
``[1, 2]``) and then coerced to the field's type, so ``lr=1e-3`` and ``lr: 0.001`` in a file
mean the same. An unknown key is an error with a did-you-mean, raised before any data is
read, and the resolved configuration is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cvcraft.errors import ConfigError
from cvcraft.registry import did_you_mean

MAX_IMGSZ = 16384  # px: beyond this a single decoded image is GiBs (a typo, not a size)


def _opt(default: Any, help: str, choices: tuple[Any, ...] | str | None = None, **kw: Any) -> Any:
    """A config field with its help text and allowed values: a tuple, or ``"module:REGISTRY"``
    (the names registered there, read when the config is checked, so a new optimizer,
    schedule or loss is a choice as soon as it is registered)."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    """Keys shared by every task's train/val/predict commands."""

    data: str = _opt("shapes", "dataset: 'shapes[:N]', a folder, CIFAR/IDX folder or CSV file")
    model: str = _opt("resnet20", "model name from `cvcraft models`")
    epochs: int = _opt(10, "number of training epochs")
    batch: int = _opt(64, "batch size per optimizer step (before accumulation)")
    imgsz: int = _opt(32, "square input size fed to the model")
    workers: int = _opt(2, "data-loading worker processes (0 = in the main process)")
    threads: int = _opt(
        0, "torch CPU threads (0 = auto: torch's default capped at the usable cores)"
    )
    seed: int = _opt(0, "seed of every random choice (data order, augmentation, init)")
    deterministic: bool = _opt(False, "use deterministic algorithms (bit-identical reruns)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N | mps")
    optimizer: str = _opt("sgd", "optimizer", "cvcraft.engine.optim:OPTIMIZERS")
    lr: float = _opt(0.05, "base learning rate (the peak after warmup)")
    lr_scale: str = _opt(
        "none", "scale lr with the batch: linear | sqrt (lr given for base_batch)",
        ("none", "linear", "sqrt"),
    )  # fmt: skip
    base_batch: int = _opt(256, "lr_scale: the batch size lr= is meant for")
    momentum: float = _opt(0.9, "SGD/RMSProp momentum (adam/adamw use their default betas)")
    nesterov: bool = _opt(True, "Nesterov momentum for SGD")
    weight_decay: float = _opt(5e-4, "weight decay (not applied to biases and norm layers)")
    decouple_wd: bool = _opt(
        False, "weight_decay is the per-step decay lr*wd at the peak lr: changing lr or "
        "lr_scale keeps the decay (airbench's decoupled lr/wd)",
    )  # fmt: skip
    schedule: str = _opt(
        "cosine", "LR schedule, stepped per iteration", "cvcraft.engine.schedules:SCHEDULES"
    )
    warmup_epochs: float = _opt(1.0, "linear warmup length in epochs (fractions allowed)")
    min_lr_ratio: float = _opt(0.0, "final LR as a fraction of lr (cosine/linear)")
    cycles: int = _opt(
        1, "cosine_restarts: equal cosine cycles; each one's end is saved as snapshot<k>.pt"
    )
    step_size: float = _opt(30.0, "step schedule: epochs between decays")
    milestones: list = _opt([], "multistep schedule: epochs at which LR decays")
    gamma: float = _opt(0.1, "step/multistep decay factor")
    power: float = _opt(1.0, "poly schedule power")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this value (0 = off)")
    grad_clip_value: float = _opt(0.0, "clip each gradient element to +-value (0 = off)")
    accumulate: int = _opt(1, "gradient accumulation steps per optimizer step")
    amp: bool = _opt(False, "mixed precision: bf16 autocast on CPU, fp16 on CUDA")
    channels_last: bool = _opt(False, "use channels_last memory format")
    ema: bool = _opt(False, "keep an exponential moving average of the weights")
    ema_decay: float = _opt(0.999, "EMA decay")
    ema_tau: float = _opt(200.0, "EMA warmup: decay ramps as 1 - exp(-updates / tau)")
    patience: int = _opt(0, "early stopping: epochs without improvement (0 = off)")
    val_interval: int = _opt(
        1, "evaluate every N epochs and after the last; best.pt/patience see evaluated epochs"
    )
    val_raw: bool = _opt(
        True, "with ema=true also evaluate the raw weights (raw_* columns); false halves eval"
    )
    monitor: str = _opt("", "metric that picks best.pt and drives early stopping")
    monitor_mode: str = _opt(
        "auto",
        "is a higher monitor better (max) or lower (min); auto: losses min, others max",
        ("auto", "max", "min"),
    )
    metrics: list = _opt([], "evaluators to run (default: all of the task's), e.g. [accuracy]")
    l1: float = _opt(0.0, "L1 penalty coefficient on weights (explicit loss term)")
    l2: float = _opt(0.0, "L2 penalty coefficient on weights (explicit loss term)")
    init: str = _opt("default", "weight initialisation", ("default", "kaiming", "xavier"))
    weights: str = _opt("", "initial weights (.pt) for fine-tuning or evaluation")
    freeze: list = _opt([], "parameter-name prefixes to freeze, e.g. [conv1, layer1]")
    lr_mults: dict = _opt({}, "per-prefix LR multipliers, e.g. {fc: 10}")
    resume: bool = _opt(False, "resume the run in `out` from its last valid checkpoint")
    out: str = _opt("", "run folder (default runs/<task>/<name>, numbered if it exists)")
    exist_ok: bool = _opt(
        False, "allow out= to be a folder that already holds a run (its files are replaced)"
    )
    name: str = _opt("train", "run name under runs/<task>/")
    classes: list = _opt([], "class names in label order (default: found in the data)")
    val_fraction: float = _opt(0.1, "validation share when the dataset has no val split")
    fraction: float = _opt(1.0, "use this fraction of the training set (quick runs)")
    cache: bool = _opt(False, "decode every image once into a memory-mapped cache")
    cache_dir: str = _opt("", "where the decoded-image cache lives (default ~/.cache/cvcraft)")
    skip_bad: bool = _opt(False, "skip (and count) unreadable images instead of stopping")
    plots: bool = _opt(True, "write plots/*.png")
    tensorboard: bool = _opt(
        False, "write TensorBoard events (scalars, lr, histograms) to tensorboard/"
    )
    diagnose: bool = _opt(
        False, "record per-layer gradient norms and dead ReLUs; warn on vanishing/exploding"
    )
    progress: bool = _opt(True, "show progress bars")
    source: str = _opt("", "predict: an image file or a folder of images")
    augment: list = _opt(
        [], "train augmentation pipeline spec (list of {name: ..., args}); replaces the default"
    )
    devices: int = _opt(1, "processes for DDP training (>1 launches torchrun on this machine)")
    sync_bn: bool = _opt(False, "DDP: convert BatchNorm layers to SyncBatchNorm")

    def check(self) -> None:
        """Task-specific validation (subclasses extend); raise ConfigError naming the key."""


def _resolve_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _coerce(key: str, value: Any, typ: Any) -> Any:
    if isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}={value!r}: not a valid value ({e})") from None
    origin = typing.get_origin(typ) or typ
    if isinstance(typ, types.UnionType):
        origin = str
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise ValueError("expected true or false")
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if origin is str:
            return "" if value is None else str(value)
        if origin is list:
            if value is None:
                return []
            return list(value) if isinstance(value, (list, tuple)) else [value]
        if origin is dict:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise ValueError("expected a mapping like {a: 1}")
            return dict(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}={value!r}: {e} ({getattr(origin, '__name__', origin)})") from None
    return value


CLASS_WEIGHT_MODES = ("none", "inverse", "sqrt")


def check_class_weights(spec: list) -> None:
    """``class_weights=`` in every task: [] / [none] (equal), [inverse] or [sqrt] (from the
    training labels' counts), or one number >= 0 per class."""
    if len(spec) == 1 and isinstance(spec[0], str):
        if spec[0] not in CLASS_WEIGHT_MODES:
            raise ConfigError(
                f"class_weights={spec[0]!r}: use {', '.join(CLASS_WEIGHT_MODES)} or a list of "
                "numbers (one per class)"
            )
        return
    if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in spec):
        raise ConfigError(
            f"class_weights={spec} must be none|inverse|sqrt or numbers >= 0 (one per class)"
        )


def resolve_choices(choices: tuple[Any, ...] | str | None) -> tuple[Any, ...] | None:
    """A field's allowed values: the tuple itself, or the names of registry ``"module:ATTR"``."""
    if not isinstance(choices, str):
        return choices
    import importlib

    module, _, attr = choices.partition(":")
    return tuple(getattr(importlib.import_module(module), attr).names())


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``["lr=0.1", "epochs=3"]`` -> ``{"lr": "0.1", "epochs": "3"}``."""
    out: dict[str, str] = {}
    for a in args:
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not key=value (example: epochs=10)")
        k, v = a.split("=", 1)
        out[k.strip()] = v
    return out


def build_config(
    cls: type[TrainConfig],
    values: dict[str, Any] | None = None,
    *,
    yaml_file: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
    task: str = "",
) -> TrainConfig:
    """An instance of ``cls``: defaults < ``defaults`` (e.g. the demo preset) < YAML file <
    ``values``; old spellings renamed (``cls.renamed``) with a note; validated."""
    merged: dict[str, Any] = dict(defaults or {})
    if yaml_file:
        p = Path(yaml_file)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of key: value")
        loaded.pop("task", None)
        merged.update(loaded)
    merged.update(values or {})
    merged = rename_deprecated(cls, merged)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in merged.items():
        if k not in known:
            where = f" for task {task}" if task else ""
            raise ConfigError(
                f"unknown key {k!r}{where}.{did_you_mean(k, known)} "
                f"Run `cvcraft train {task or '<task>'} --help` for the list."
            )
        kwargs[k] = _coerce(k, v, _resolve_type(cls, known[k]))
    cfg = cls(**kwargs)
    validate(cfg)
    return cfg


def rename_deprecated(cls: type[TrainConfig], values: dict[str, Any]) -> dict[str, Any]:
    """Old key spellings (``cls.renamed = {old: new}``) become the new ones, with a one-line
    note; giving both is an error."""
    out = dict(values)
    # ``cls.aliases``: other spellings that are not deprecated (``class=`` for ``label=``,
    # where the natural name is a Python keyword and cannot be a field)
    for alias, key in getattr(cls, "aliases", {}).items():
        if alias in out:
            if key in out:
                raise ConfigError(f"{alias}= and {key}= are the same key; give only one")
            out[key] = out.pop(alias)
    for old, new in getattr(cls, "renamed", {}).items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{old}= is the old name of {new}=; give only {new}=")
        print(f"note: {old}= is deprecated; it is now {new}= (same meaning)")
        out[new] = out.pop(old)
    return out


def validate(cfg: TrainConfig) -> None:
    """Range and choice checks; raises ConfigError naming the key."""
    for f in fields(cfg):
        choices = resolve_choices(f.metadata.get("choices"))
        val = getattr(cfg, f.name)
        if choices and val not in choices:
            raise ConfigError(
                f"{f.name}={val!r} is not one of {', '.join(map(str, choices))}."
                f"{did_you_mean(str(val), [str(c) for c in choices])}"
            )
    if cfg.imgsz > MAX_IMGSZ:
        raise ConfigError(
            f"imgsz={cfg.imgsz} is larger than {MAX_IMGSZ} px (one {cfg.imgsz}^2 image would "
            f"need {3 * cfg.imgsz**2 / 2**30:.0f} GiB); pick a smaller imgsz="
        )
    for k, v in cfg.lr_mults.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(
                f"lr_mults: {k}={v!r} must be a number >= 0 (a multiplier of lr), "
                "e.g. lr_mults={fc: 10, layer1: 0.1}"
            )
    positive = ["epochs", "batch", "imgsz", "accumulate", "base_batch"]
    for k in positive:
        if getattr(cfg, k) <= 0:
            raise ConfigError(f"{k}={getattr(cfg, k)} must be > 0")
    nonneg = [
        "workers",
        "threads",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "grad_clip",
        "grad_clip_value",
    ]
    for k in nonneg + ["patience", "l1", "l2"]:
        if getattr(cfg, k) < 0:
            raise ConfigError(f"{k}={getattr(cfg, k)} must be >= 0")
    if not 0.0 < cfg.fraction <= 1.0:
        raise ConfigError(f"fraction={cfg.fraction} must be in (0, 1]")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction={cfg.val_fraction} must be in (0, 1)")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"ema_decay={cfg.ema_decay} must be in [0, 1)")
    if cfg.devices < 1:
        raise ConfigError(f"devices={cfg.devices} must be >= 1")
    set_by_task = {"num_classes": "the data's classes"}
    if hasattr(cfg, "in_chans"):
        set_by_task["in_chans"] = "the key in_chans="
    for k in set_by_task.keys() & set(getattr(cfg, "model_kwargs", None) or {}):
        raise ConfigError(
            f"model_kwargs: {k} is set by the task from {set_by_task[k]}; remove it "
            "(to fine-tune on other classes, pass weights=: a head of another size is "
            "re-initialised)"
        )
    cfg.check()


def metric_direction(metric: str, lower_is_better: Iterable[str] = ()) -> str:
    """``"min"`` for losses and errors (``*loss``, ``fid``, ``kid``, ``hamming``, and any name
    in ``lower_is_better``), ``"max"`` for everything else (accuracy, mAP, IoU, ...)."""
    name = metric.removeprefix("raw_")
    low = name.endswith("loss") or name in ("fid", "kid", "hamming") or name in lower_is_better
    return "min" if low else "max"


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path, task: str) -> None:
    data = {"task": task, **config_to_dict(cfg)}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


# Keys only training reads (optimiser, schedule, regularisation, checkpoint choice, run
# launch): ``val``/``predict --help`` leave them out. A task config adds its own training-only
# keys (augmentation, distillation, ...) in a ``train_only_keys`` class attribute.
TRAIN_ONLY_KEYS = frozenset({
    "epochs", "optimizer", "lr", "lr_scale", "base_batch", "momentum", "nesterov",
    "weight_decay", "decouple_wd", "schedule", "warmup_epochs", "min_lr_ratio", "step_size",
    "milestones",
    "gamma", "power", "grad_clip", "grad_clip_value", "accumulate", "ema", "ema_decay",
    "ema_tau", "patience", "val_interval", "val_raw", "monitor", "monitor_mode", "l1", "l2",
    "init", "freeze", "lr_mults", "resume", "fraction", "tensorboard", "diagnose", "augment",
    "devices", "sync_bn", "deterministic",
})  # fmt: skip


def train_only_keys(cls: type[TrainConfig]) -> frozenset[str]:
    """The keys of ``cls`` that only ``train`` reads (the base ones plus the task's own)."""
    return TRAIN_ONLY_KEYS | frozenset(getattr(cls, "train_only_keys", ()))


def config_help(cls: type[TrainConfig], command: str = "train") -> str:
    """One line per key: name, type, default and help, for ``--help``; ``val``/``predict``
    list only the keys they read."""
    hints = typing.get_type_hints(cls)
    hidden = train_only_keys(cls) if command in ("val", "predict") else frozenset()
    lines = []
    for f in fields(cls):
        if f.name in hidden:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        typ = getattr(hints[f.name], "__name__", str(hints[f.name]))
        choices = resolve_choices(f.metadata.get("choices"))
        extra = f" [{'|'.join(map(str, choices))}]" if choices else ""
        lines.append(f"  {f.name:<16} {typ:<6} default={default!r:<12} {f.metadata['help']}{extra}")
    return "\n".join(lines)
