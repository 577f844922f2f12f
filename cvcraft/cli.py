"""The ``cvcraft`` command line, ultralytics style: ``cvcraft <command> [task] key=value ...``.

Commands: train, val, predict, demo, models. ``--config FILE.yaml`` supplies keys, and
``key=value`` arguments override them; ``cvcraft <command> --help`` lists every key.
Errors raised on purpose (``CvcraftError``) print as one clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cvcraft.engine.config import parse_overrides
from cvcraft.engine.threads import passive_waiting
from cvcraft.errors import ConfigError, CvcraftError
from cvcraft.registry import did_you_mean
from cvcraft.tasks import get_task, list_tasks, model_task, task_config, task_help

COMMANDS = (
    "train",
    "val",
    "predict",
    "demo",
    "models",
    "convert",
    "check",
    "eval",
    "augment",
    "pack",
    "imgproc",
    "calibrate",
    "explain",
    "attack",
    "prune",
    "quantize",
    "export",
    "tune",
    "scaling",
    "kfold",
    "ensemble",
)

USAGE_HEAD = """\
cvcraft <command> [task] [key=value ...] [--config FILE.yaml]

tasks: {tasks}

commands:
  train   <task>       train a model; writes a run folder (config, metrics, checkpoints, plots)
  val     <task>       evaluate weights= on the val split of data=
  predict <task>       predict source=<file|dir> with weights= (detect/segment: drawn images)
  demo    [task]       train on the embedded synthetic shapes dataset
  models  [pattern]    registered models with params and GMACs (latency=true adds CPU ms)
  augment data=... pipeline=aug.yaml out=grid.png n=16   look at what a pipeline does
  pack    data=... out=shards/                    write tar shards (WebDataset layout)
  convert from=voc to=coco src=DIR out=DIR    convert a detection dataset (coco|yolo|voc)
  check   data=PATH [format=coco|yolo|voc|masks] list every problem in a detection or mask dataset
  imgproc OP src=IMG [key=value]   a classical image operation (imgproc help: the list)
  calibrate images=DIR pattern=9x6 square=25  camera intrinsics from checkerboard photos
  tune    TASK space=space.yaml trials=N out=DIR  Optuna search (TPE, pruning, resumable)
  scaling TASK models=a,b,c fractions=.25,.5,1     fit L(N), L(D) power laws to a run ladder
  scaling TASK model=M widths=8,16,32 fractions=..  the same over one model's widths
  kfold   TASK folds=5 out=DIR set='{...}'         k stratified folds, mean +- std, OOF preds
  ensemble TASK weights=a.pt,b.pt data=...         average members' probabilities
  ensemble detect preds=a.json,b.json method=wbf weights=2,1   fuse detectors' boxes
  explain [METHOD] weights=best.pt source=imgs/    CAM/Grad-CAM/... heat-map overlays
  attack  [METHOD] weights=best.pt data=...        robust accuracy vs eps, adversarial grid
  prune   [METHOD] weights=best.pt amount=0.5      magnitude / L1-channel pruning + table
  quantize [MODE] weights=best.pt data=...         int8 (static/dynamic/qat) + table
  export  [FORMAT] weights=best.pt                 onnx | torchscript, with a parity check
  eval    detect gt=coco.json pred=results.json   COCO bbox metrics (equal to pycocotools)
  eval    segm gt=coco.json pred=results.json     COCO mask metrics (RLE results; = pycocotools)
  eval    panoptic gt= gt_dir= pred= pred_dir=     panoptic quality PQ/SQ/RQ (COCO panoptic)

examples:
  cvcraft demo
  cvcraft demo detect
  cvcraft demo segment
  cvcraft train classify data=path/to/imagefolder model=resnet18 epochs=20 imgsz=224
  cvcraft train detect data=coco128/data.yaml model=yolo_n imgsz=640 epochs=100
  cvcraft train segment data=path/to/masks_dataset model=unet imgsz=256
  cvcraft train classify data=shapes:2000 devices=2     # DDP through torchrun
  cvcraft val classify data=path/to/imagefolder weights=runs/classify/train/best.pt
  cvcraft predict detect weights=runs/detect/train/best.pt source=images/
"""


def usage() -> str:
    """The help text, with the registered tasks (the first is the default)."""
    names = list_tasks()
    tasks = ", ".join(f"{n} (default)" if i == 0 else n for i, n in enumerate(names))
    return USAGE_HEAD.replace("{tasks}", tasks)


def _parse(argv: list[str]) -> tuple[str, str | None, list[str], str | None, bool]:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0)
    if argv[0] in ("-V", "--version", "version"):
        from cvcraft import __version__

        print(f"cvcraft {__version__}")
        raise SystemExit(0)
    ap = argparse.ArgumentParser(prog="cvcraft", add_help=False)
    ap.add_argument("command", nargs="?")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)
    if ns.command in (None, "-h", "--help", "help"):
        print(usage())
        raise SystemExit(0)
    if ns.command not in COMMANDS:
        raise ConfigError(
            f"unknown command {ns.command!r}.{did_you_mean(ns.command, COMMANDS)} "
            f"Commands: {', '.join(COMMANDS)}"
        )
    rest = list(ns.rest)
    want_help = any(a in ("-h", "--help") for a in rest)
    rest = [a for a in rest if a not in ("-h", "--help")]
    config_file = None
    if "--config" in rest:
        i = rest.index("--config")
        if i + 1 >= len(rest):
            raise ConfigError("--config needs a file: --config run.yaml")
        config_file = rest[i + 1]
        del rest[i : i + 2]
    task = None
    if rest and "=" not in rest[0]:
        task = rest.pop(0)
    if task is None and config_file and ns.command in ("train", "val", "predict", "demo"):
        task = _config_task(config_file)  # a run's config.yaml names its task
    return ns.command, task, rest, config_file, want_help


def _config_task(path: str) -> str | None:
    """The ``task:`` of a config file (a run folder's config.yaml has one), else None."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # build_config reports the file's problem with its own message
    task = loaded.get("task") if isinstance(loaded, dict) else None
    return str(task) if task else None


def _check_task(command: str, task: str | None) -> str:
    task = task or list_tasks()[0]
    tasks = list_tasks()
    if task not in tasks:
        raise ConfigError(
            f"unknown task {task!r} for {command}.{did_you_mean(task, tasks)} "
            f"Tasks available now: {', '.join(tasks)}"
        )
    return task


def _tool_args(
    command: str, rest: list[str], allowed: dict[str, str], need: tuple[str, ...]
) -> dict:
    """key=value arguments of the tool commands, checked against ``allowed``."""
    args = parse_overrides(rest)
    for k in args:
        if k not in allowed:
            raise ConfigError(
                f"unknown key {k!r} for {command}.{did_you_mean(k, allowed)} "
                f"Keys: {', '.join(allowed)}"
            )
    missing = [k for k in need if not args.get(k)]
    if missing:
        raise ConfigError(f"{command} needs {', '.join(f'{k}=' for k in missing)}")
    return args


def _tool_help(command: str, allowed: dict[str, str]) -> None:
    print(f"cvcraft {command} key=value ...\n\nkeys:")
    for k, h in allowed.items():
        print(f"  {k:<10} {h}")


MODELS_KEYS = {
    "imgsz": "square input size for the MACs count (default: each model's own)",
    "latency": "true: also time a batch-1 CPU forward (slow for big models)",
    "rf": "true: also print each layer's theoretical receptive field and jump (stride)",
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:100] if text else ''}"


def _uncounted_row(name: str, task: str, size: tuple[int, ...] | None, e: Exception) -> str:
    """A table row for a model whose MACs could not be counted: params from a build on the
    meta device (no memory), and why."""
    import torch

    from cvcraft.models import create_model

    why = _first_line(e)
    if isinstance(e, NotImplementedError):  # e.g. nonzero() in a detector's proposals
        why = "its forward has data-dependent ops that cannot be counted without real data"
    try:
        with torch.device("meta"):
            model = create_model(name)
        params = f"{sum(p.numel() for p in model.parameters()) / 1e6:>9.2f}M"
        size = size or tuple(getattr(model, "default_input_size", ()))
    except Exception:
        params = f"{'?':>10}"
    shown = "x".join(map(str, size)) if size else "?"
    return f"{name:<32} {task:<9} {shown:<14} {params} {'n/a':>8}  ({why})"


def cmd_models(pattern: str | None, rest: list[str], want_help: bool) -> list[str]:
    """The model table, one row printed as soon as it is counted; a model whose MACs cannot
    be counted (an input too small for it, an op without a meta kernel) gets its params and
    a note instead of stopping the table."""
    from cvcraft.models import list_models
    from cvcraft.models.profile import model_table

    if want_help:
        print("cvcraft models [pattern] [key=value]  e.g. cvcraft models 'resnet*'")
        _tool_help("models", MODELS_KEYS)
        return []
    args = _tool_args("models", rest, MODELS_KEYS, ())
    names = list_models(pattern or "*")
    if not names:
        raise ConfigError(f"no registered model matches {pattern!r}; `cvcraft models` lists all")
    size = (3, int(args["imgsz"]), int(args["imgsz"])) if args.get("imgsz") else None
    latency = str(args.get("latency", "false")).lower() in ("1", "true", "yes")
    print(
        f"{'model':<32} {'task':<9} {'input':<14} {'params':>10} {'GMACs':>8}"
        + ("  latency ms" if latency else ""),
        flush=True,
    )
    failed = 0
    for name in names:
        task = model_task(name)
        try:
            row = model_table([name], size, latency=latency)[0]
        except Exception as e:  # one model's counting problem must not hide the others
            failed += 1
            print(_uncounted_row(name, task, size, e))
            continue
        line = (
            f"{row['name']:<32} {task:<9} {'x'.join(map(str, row['input_size'])):<14} "
            f"{row['params'] / 1e6:>9.2f}M {row['gmacs']:>8.3f}"
        )
        if latency:
            line += f"  {row['latency_ms']:.1f}"
        print(line, flush=True)
        if str(args.get("rf", "false")).lower() in ("1", "true", "yes"):
            print_receptive_fields(name, size)
    if failed:
        print(f"{failed} of {len(names)} models: MACs not counted (n/a; the reason is on the row)")
    return names


def print_receptive_fields(name: str, size: tuple[int, ...] | None) -> None:
    """``cvcraft models NAME rf=true``: the receptive-field table of one model."""
    import torch

    from cvcraft.models import create_model
    from cvcraft.models.profile import format_receptive_fields, receptive_fields

    with torch.device("meta"):
        model = create_model(name)
    size = size or tuple(getattr(model, "default_input_size", (3, 224, 224)))
    print(format_receptive_fields(receptive_fields(model, size)) + "\n", flush=True)


CONVERT_KEYS = {
    "from": "source format: coco | yolo | voc | auto (default auto)",
    "to": "destination format: coco | yolo | voc",
    "src": "source dataset path",
    "dst": "destination folder",
    "out": "destination folder (the same as dst=, the name every other command uses)",
    "split": "split to convert (default train)",
    "images": "copy | symlink | none (default copy)",
}


def cmd_convert(_: str | None, rest: list[str], want_help: bool) -> Any:
    from cvcraft.data.detection import convert_dataset

    if want_help:
        return _tool_help("convert", CONVERT_KEYS)
    a = _tool_args("convert", rest, CONVERT_KEYS, ("to", "src"))
    if a.get("out") and a.get("dst") and a["out"] != a["dst"]:
        raise ConfigError("convert: give the destination once, as out= (or dst=)")
    a["dst"] = a.get("dst") or a.get("out", "")
    if not a["dst"]:
        raise ConfigError("convert needs out= (the destination folder; dst= also works)")
    report = convert_dataset(
        a["src"],
        a.get("from") or None,
        a["dst"],
        a["to"],
        split=a.get("split", "train"),
        images=a.get("images", "copy"),
    )
    print(report)
    return report


CHECK_KEYS = {
    "data": "dataset path (COCO json, YOLO data yaml or folder, VOC folder, mask YAML or "
    "folder with images/ and masks/)",
    "format": "coco | yolo | voc | masks (default: detected)",
    "decode": "true: also decode every image (default true)",
}


class ProblemsFound(CvcraftError):
    """``cvcraft check`` found problems (exit code 1, the list is already printed)."""


def cmd_check(_: str | None, rest: list[str], want_help: bool) -> Any:
    from cvcraft.data.detection import check_dataset
    from cvcraft.data.segmentation_check import check_segmentation, is_mask_dataset

    if want_help:
        return _tool_help("check", CHECK_KEYS)
    a = _tool_args("check", rest, CHECK_KEYS, ("data",))
    decode = str(a.get("decode", "true")).lower() not in ("0", "false", "no")
    if a.get("format") in (None, "", "masks") and is_mask_dataset(a["data"]):
        problems = check_segmentation(a["data"], decode_images=decode)
    else:
        problems = check_dataset(a["data"], a.get("format") or None, decode_images=decode)
    for p in problems:
        print(p)
    if problems:
        raise ProblemsFound(f"{len(problems)} problem(s) in {a['data']}")
    print(f"{a['data']}: no problems found")
    return problems


EVAL_KEYS = {
    "gt": "COCO ground-truth JSON",
    "pred": "COCO results JSON (detect: bbox; segm: RLE segmentation)",
}


def cmd_eval(task: str | None, rest: list[str], want_help: bool) -> Any:
    from cvcraft.metrics.coco import METRIC_NAMES, SUMMARY_KEYS, evaluate_coco_files

    if task == "panoptic":
        from cvcraft.metrics.panoptic import PANOPTIC_KEYS, run_panoptic_eval

        if want_help:
            return _tool_help("eval panoptic", PANOPTIC_KEYS)
        return run_panoptic_eval(_tool_args("eval", rest, PANOPTIC_KEYS, tuple(PANOPTIC_KEYS)))
    if task not in (None, "detect", "segm"):
        raise ConfigError(
            f"eval supports detect (box AP), segm (mask AP) and panoptic (PQ); got {task!r}"
        )
    if want_help:
        return _tool_help(f"eval {task or 'detect'}", EVAL_KEYS)
    a = _tool_args("eval", rest, EVAL_KEYS, ("gt", "pred"))
    res = evaluate_coco_files(a["gt"], a["pred"], iou_type="segm" if task == "segm" else "bbox")
    # the names train/val write to metrics.json (map, map50, ...), not pycocotools' (AP, ...)
    summary = {METRIC_NAMES[k]: float(res[k]) for k in SUMMARY_KEYS}
    print(json.dumps(summary))
    return summary


def _module_tool(
    command: str,
    module: str,
    keys: str,
    runner: str,
    need: tuple[str, ...],
    positional: str | None = None,
) -> Any:
    """A tool command whose keys and work live in a library module (lazy import);
    ``positional`` names the key a bare first word fills (``cvcraft imgproc canny ...``)."""

    def cmd(word: str | None, rest: list[str], want_help: bool) -> Any:
        import importlib

        mod = importlib.import_module(module)
        allowed = getattr(mod, keys)
        if want_help:
            return _tool_help(command, allowed)
        args = _tool_args(command, rest, allowed, need)
        if word is not None:
            if positional is None:
                raise ConfigError(f"{command} takes key=value arguments only, not {word!r}")
            args[positional] = word
        return getattr(mod, runner)(args)

    return cmd


def cmd_tune(task: str | None, rest: list[str], want_help: bool) -> Any:
    """``cvcraft tune TASK space=... trials=N [out=] [metric=] [direction=] key=value ...``;
    keys that are not tune's are fixed settings of every trial's run."""
    from cvcraft.tasks.tune import TUNE_KEYS, run_tune

    if want_help:
        _tool_help("tune", TUNE_KEYS)
        print("  (any other key=value: a fixed setting of the task, as for `train`)")
        return None
    args: dict[str, Any] = dict(parse_overrides(rest))
    if task is not None:
        args["task"] = task
    return run_tune(args)


def cmd_scaling(task: str | None, rest: list[str], want_help: bool) -> Any:
    """``cvcraft scaling TASK models=a,b,c fractions=... key=value ...``."""
    from cvcraft.tasks.scaling import SCALING_KEYS, run_scaling

    if want_help:
        _tool_help("scaling", SCALING_KEYS)
        print("  (any other key=value: a fixed setting of the task, as for `train`)")
        return None
    args: dict[str, Any] = dict(parse_overrides(rest))
    if task is not None:
        args["task"] = task
    return run_scaling(args)


TOOL_COMMANDS = {
    "models": cmd_models,
    "convert": cmd_convert,
    "check": cmd_check,
    "eval": cmd_eval,
    "tune": cmd_tune,
    "scaling": cmd_scaling,
    # cvcraft augment data=... pipeline=aug.yaml out=grid.png n=16
    "augment": _module_tool(
        "augment", "cvcraft.tasks.tools", "AUGMENT_KEYS", "run_augment", ("data",), "task"
    ),
    # cvcraft pack data=... out=shards/ [task=classify|detect|segment]
    "pack": _module_tool(
        "pack", "cvcraft.tasks.tools", "PACK_KEYS", "run_pack", ("data", "out"), "task"
    ),
    # cvcraft imgproc canny src=img.jpg low=50 high=150 steps=true   (imgproc help: the ops)
    "imgproc": _module_tool(
        "imgproc", "cvcraft.classic.cli_tools", "IMGPROC_KEYS", "run_imgproc", (), "op"
    ),
    # cvcraft explain weights=best.pt source=imgs/ method=gradcam [layer=...] [class=...]
    "explain": _module_tool(
        "explain",
        "cvcraft.tasks.explain_tool",
        "EXPLAIN_KEYS",
        "run_explain",
        ("weights", "source"),
        "method",
    ),
    # cvcraft attack weights=best.pt data=... method=fgsm,pgd eps=0,2/255,8/255
    "attack": _module_tool(
        "attack",
        "cvcraft.tasks.attack_tool",
        "ATTACK_KEYS",
        "run_attack",
        ("weights", "data"),
        "method",
    ),
    # cvcraft prune weights=best.pt method=l1_channel amount=0.5
    "prune": _module_tool(
        "prune", "cvcraft.tasks.compress_tool", "PRUNE_KEYS", "run_prune", ("weights",), "method"
    ),
    # cvcraft quantize weights=best.pt data=... mode=static|dynamic
    "quantize": _module_tool(
        "quantize",
        "cvcraft.tasks.compress_tool",
        "QUANTIZE_KEYS",
        "run_quantize",
        ("weights", "data"),
        "mode",
    ),
    # cvcraft export weights=best.pt format=onnx|torchscript [dynamic=true] [nms=true]
    "export": _module_tool(
        "export", "cvcraft.tasks.export_tool", "EXPORT_KEYS", "run_export", ("weights",), "format"
    ),
    # cvcraft kfold multilabel folds=5 out=DIR set='{data: ..., epochs: 10}'
    "kfold": _module_tool("kfold", "cvcraft.tasks.kfold", "KFOLD_KEYS", "run_kfold", (), "task"),
    # cvcraft ensemble classify weights=a.pt,b.pt data=...
    # cvcraft ensemble detect preds=a.json,b.json method=wbf weights=2,1 (no checkpoints)
    "ensemble": _module_tool(
        "ensemble", "cvcraft.tasks.ensemble", "ENSEMBLE_KEYS", "run_ensemble", (), "task"
    ),
    # cvcraft calibrate images=DIR pattern=9x6 square=25
    "calibrate": _module_tool(
        "calibrate", "cvcraft.classic.cli_tools", "CALIBRATE_KEYS", "run_calibrate", ("images",)
    ),
}


def _print_help(command: str, task: str) -> None:
    print(f"cvcraft {command} {task} [key=value ...] [--config FILE.yaml]\n\nkeys:")
    print(task_help(task, command))
    if command in ("val", "predict"):
        print(f"\n(training keys: `cvcraft train {task} --help`)")


# Keys that may differ on resume: they change where/how the run executes, not what it
# computes. Everything else comes from the run's own config.yaml so the resumed run
# continues the same experiment (same schedule length, same data, same seed).
RESUME_OVERRIDABLE = (
    "workers", "threads", "device", "progress", "plots", "resume", "out", "name", "exist_ok",
    "tensorboard", "diagnose",
)  # fmt: skip


def resume_config(task: str, cfg: Any, overrides: dict[str, str]) -> Any:
    from cvcraft.engine.trainer import resolve_run_dir

    out = resolve_run_dir(task, cfg)
    saved = out / "config.yaml"
    if not saved.exists():
        raise ConfigError(f"resume=true but {saved} does not exist; nothing to resume in {out}")
    keep = {k: v for k, v in overrides.items() if k in RESUME_OVERRIDABLE}
    ignored = sorted(set(overrides) - set(keep))
    if ignored:
        print(f"resume: using {saved}; ignoring {', '.join(ignored)} given now")
    resumed = task_config(task, {**keep, "resume": "true", "out": str(out)}, yaml_file=saved)
    return resumed


def check_model_for_task(name: str, task: str) -> None:
    """Fail before any data is read (and before torchrun starts workers) when ``model=``
    is unknown or belongs to another task."""
    from cvcraft.models import list_models

    spec = get_task(task)
    if not spec.model_packages and not spec.models:
        return  # the task builds its own networks (model= is not a registry name)
    names = list_models()
    if name not in names and name not in spec.models:  # a task's own models (hog_svm)
        same = [n for n in names if model_task(n) == task]
        raise ConfigError(
            f"model={name!r} is not a registered model.{did_you_mean(name, same)} "
            f"`cvcraft models` lists them all."
        )
    if model_task(name) != task:
        raise ConfigError(
            f"model={name!r} is a {model_task(name)} model, not a {task} one; "
            f"use `cvcraft train {model_task(name)} model={name}` or pick a {task} model"
        )


def run(argv: list[str]) -> Any:
    command, task, rest, config_file, want_help = _parse(argv)
    if command in TOOL_COMMANDS:
        return TOOL_COMMANDS[command](task, rest, want_help)
    task = _check_task(command, task)
    if want_help:
        _print_help(command, task)
        return None
    overrides = parse_overrides(rest)
    spec = get_task(task)
    defaults = spec.demo_preset if command == "demo" else None
    cfg = task_config(task, overrides, yaml_file=config_file, defaults=defaults)
    if command in ("train", "demo") and cfg.resume:
        cfg = resume_config(task, cfg, overrides)
    if command in ("train", "demo"):
        check_model_for_task(cfg.model, task)
    if command in ("train", "demo") and cfg.devices > 1 and "LOCAL_RANK" not in os.environ:
        from cvcraft.engine.distributed import launch

        return launch(argv, cfg.devices)

    from cvcraft.engine.config import save_config
    from cvcraft.engine.trainer import (
        Trainer,
        claim_run_dir,
        ensure_writable,
        resolve_run_dir,
        write_atomic,
        write_metrics_csv,
    )

    task_cls = spec.load_class()
    if command not in ("train", "demo"):  # the Trainer sets them for training
        from cvcraft.engine.threads import set_threads

        set_threads(cfg.threads)
    if command == "train" and getattr(cfg, "folds", 0) and getattr(cfg, "fold", 0) < 0:
        from cvcraft.tasks.kfold import kfold_from_config  # folds=k: train every fold

        return kfold_from_config(task, cfg)
    if command in ("train", "demo"):
        from cvcraft.engine.distributed import is_main_process

        trainer = Trainer(task_cls(cfg), cfg)
        _RUN["dir"] = trainer.out
        metrics = trainer.fit()
        if is_main_process():
            print(json.dumps({k: metrics[k] for k in spec.summary_keys if k in metrics}))
        return metrics
    if not cfg.weights:
        raise ConfigError(f"{command} needs weights=path/to/best.pt")
    if not Path(cfg.weights).exists():
        raise ConfigError(f"weights={cfg.weights}: no such file")
    if cfg.name == "train":
        cfg.name = command
    out = resolve_run_dir(task, cfg)
    claim_run_dir(out, cfg.exist_ok, keep=cfg.weights)
    ensure_writable(out)
    if command == "val":
        metrics = task_cls.validate(cfg, out)
        save_config(cfg, out / "config.yaml", task)  # after: the checkpoint's imgsz, resize...
        write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        write_metrics_csv(out / "metrics.csv", [scalars])
        print(json.dumps({k: metrics[k] for k in spec.val_keys if k in metrics}))
        print(f"results saved to {out}")
        return metrics
    if not cfg.source and spec.predict_needs_source:
        raise ConfigError("predict needs source=<image file or folder>")
    results = task_cls.predict(cfg, out)
    for r in results[:20]:
        print(f"{r['path']}: {r['summary']}")
    if len(results) > 20:
        print(f"... {len(results) - 20} more")
    print(f"results saved to {out}")
    return results


_RUN: dict[str, Path] = {}  # the run folder of this invocation (for the Ctrl-C message)


def _interrupted() -> str:
    """What Ctrl-C leaves: the last finished epoch if there is one, else nothing to resume."""
    folder = _RUN.get("dir")
    if folder is None:
        return "interrupted"
    last = folder / "last.pt"
    if last.exists():
        return f"interrupted; the last completed epoch is in {last} (resume=true out={folder})"
    return f"interrupted before the first epoch finished; {folder} has no checkpoint to resume"


def _one_line(msg: str) -> str:
    """A DataLoader worker re-raises our error with its traceback inside the message; the
    user needs only the last line (the original message)."""
    if "Original Traceback" in msg:
        last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
        return last.split(": ", 1)[1] if last.startswith("cvcraft.errors.") else last
    return msg


def main(argv: list[str] | None = None) -> int:
    # before anything imports torch: idle OpenMP threads sleep instead of spinning, so a
    # busy neighbour process does not collapse training (engine/threads.py)
    passive_waiting()
    _RUN.clear()
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
    except ProblemsFound as e:
        print(str(e), file=sys.stderr)
        return 1
    except CvcraftError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cvcraft --help | head`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is silent
        return 1
    except OSError as e:  # the file system said no: a read-only folder, a file as a folder
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
