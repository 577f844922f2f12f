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
  convert from=voc to=coco src=DIR dst=DIR    convert a detection dataset (coco|yolo|voc)
  check   data=PATH [format=coco|yolo|voc]    list every problem in a detection dataset
  imgproc OP src=IMG [key=value]   a classical image operation (imgproc help: the list)
  calibrate images=DIR pattern=9x6 square=25  camera intrinsics from checkerboard photos
  explain [METHOD] weights=best.pt source=imgs/    CAM/Grad-CAM/... heat-map overlays
  attack  [METHOD] weights=best.pt data=...        robust accuracy vs eps, adversarial grid
  prune   [METHOD] weights=best.pt amount=0.5      magnitude / L1-channel pruning + table
  quantize [MODE] weights=best.pt data=...         int8 (static/dynamic) + table
  export  [FORMAT] weights=best.pt                 onnx | torchscript, with a parity check
  eval    detect gt=coco.json pred=results.json   COCO bbox metrics (equal to pycocotools)

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
    return USAGE_HEAD.format(tasks=tasks)


def _parse(argv: list[str]) -> tuple[str, str | None, list[str], str | None, bool]:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
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
    return ns.command, task, rest, config_file, want_help


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
}


def cmd_models(pattern: str | None, rest: list[str], want_help: bool) -> list[str]:
    from cvcraft.models import list_models
    from cvcraft.models.profile import model_table

    if want_help:
        print("cvcraft models [pattern] [key=value]  e.g. cvcraft models 'resnet*'")
        _tool_help("models", MODELS_KEYS)
        return []
    args = _tool_args("models", rest, MODELS_KEYS, ())
    names = list_models(pattern or "*")
    size = (3, int(args["imgsz"]), int(args["imgsz"])) if args.get("imgsz") else None
    latency = str(args.get("latency", "false")).lower() in ("1", "true", "yes")
    print(
        f"{'model':<32} {'input':<14} {'params':>10} {'GMACs':>8}"
        + ("  latency ms" if latency else "")
    )
    for row in model_table(names, size, latency=latency):
        line = (
            f"{row['name']:<32} {'x'.join(map(str, row['input_size'])):<14} "
            f"{row['params'] / 1e6:>9.2f}M {row['gmacs']:>8.3f}"
        )
        if latency:
            line += f"  {row['latency_ms']:.1f}"
        print(line)
    return names


CONVERT_KEYS = {
    "from": "source format: coco | yolo | voc | auto (default auto)",
    "to": "destination format: coco | yolo | voc",
    "src": "source dataset path",
    "dst": "destination folder",
    "split": "split to convert (default train)",
    "images": "copy | symlink | none (default copy)",
}


def cmd_convert(_: str | None, rest: list[str], want_help: bool) -> Any:
    from cvcraft.data.detection import convert_dataset

    if want_help:
        return _tool_help("convert", CONVERT_KEYS)
    a = _tool_args("convert", rest, CONVERT_KEYS, ("to", "src", "dst"))
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
    "data": "dataset path (COCO json, YOLO data yaml or folder, VOC folder)",
    "format": "coco | yolo | voc (default: detected)",
    "decode": "true: also decode every image (default true)",
}


class ProblemsFound(CvcraftError):
    """``cvcraft check`` found problems (exit code 1, the list is already printed)."""


def cmd_check(_: str | None, rest: list[str], want_help: bool) -> Any:
    from cvcraft.data.detection import check_dataset

    if want_help:
        return _tool_help("check", CHECK_KEYS)
    a = _tool_args("check", rest, CHECK_KEYS, ("data",))
    decode = str(a.get("decode", "true")).lower() not in ("0", "false", "no")
    problems = check_dataset(a["data"], a.get("format") or None, decode_images=decode)
    for p in problems:
        print(p)
    if problems:
        raise ProblemsFound(f"{len(problems)} problem(s) in {a['data']}")
    print(f"{a['data']}: no problems found")
    return problems


EVAL_KEYS = {"gt": "COCO ground-truth JSON", "pred": "COCO results JSON (bbox)"}


def cmd_eval(task: str | None, rest: list[str], want_help: bool) -> Any:
    from cvcraft.metrics.coco import SUMMARY_KEYS, evaluate_coco_files

    if task not in (None, "detect"):
        raise ConfigError(f"eval supports the detect task; got {task!r}")
    if want_help:
        return _tool_help("eval detect", EVAL_KEYS)
    a = _tool_args("eval", rest, EVAL_KEYS, ("gt", "pred"))
    res = evaluate_coco_files(a["gt"], a["pred"])
    summary = {k: float(res[k]) for k in SUMMARY_KEYS}
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


TOOL_COMMANDS = {
    "models": cmd_models,
    "convert": cmd_convert,
    "check": cmd_check,
    "eval": cmd_eval,
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
    # cvcraft calibrate images=DIR pattern=9x6 square=25
    "calibrate": _module_tool(
        "calibrate", "cvcraft.classic.cli_tools", "CALIBRATE_KEYS", "run_calibrate", ("images",)
    ),
}


def _print_help(command: str, task: str) -> None:
    print(f"cvcraft {command} {task} [key=value ...] [--config FILE.yaml]\n\nkeys:")
    print(task_help(task))


# Keys that may differ on resume: they change where/how the run executes, not what it
# computes. Everything else comes from the run's own config.yaml so the resumed run
# continues the same experiment (same schedule length, same data, same seed).
RESUME_OVERRIDABLE = ("workers", "device", "progress", "plots", "resume", "out", "name")


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
    if name not in names:
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
        ensure_writable,
        resolve_run_dir,
        write_atomic,
        write_metrics_csv,
    )

    task_cls = spec.load_class()
    if command in ("train", "demo"):
        from cvcraft.engine.distributed import is_main_process

        metrics = Trainer(task_cls(cfg), cfg).fit()
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
    ensure_writable(out)
    if command == "val":
        save_config(cfg, out / "config.yaml", task)
        metrics = task_cls.validate(cfg, out)
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


def _one_line(msg: str) -> str:
    """A DataLoader worker re-raises our error with its traceback inside the message; the
    user needs only the last line (the original message)."""
    if "Original Traceback" in msg:
        last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
        return last.split(": ", 1)[1] if last.startswith("cvcraft.errors.") else last
    return msg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except ProblemsFound as e:
        print(str(e), file=sys.stderr)
        return 1
    except CvcraftError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last completed epoch is in last.pt (resume=true)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
