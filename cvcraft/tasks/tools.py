"""The data tools that work for every registered task: ``cvcraft pack`` (tar shards) and
``cvcraft augment`` (a grid of augmented samples). Both read the task registry: a task's
``data_sources`` reads its data, its ``target_kind`` says how samples are drawn."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cvcraft.data.webdataset import write_shards
from cvcraft.errors import ConfigError, CvcraftError
from cvcraft.tasks.registry import _load, get_task, list_tasks
from cvcraft.viz.augment_grid import render_augment_grid

PACK_KEYS: dict[str, str] = {
    "data": "dataset to pack (anything `train` accepts for the task)",
    "out": "output folder (gets train/ and val/ shard folders)",
    "task": "a registered task (default classify)",
    "max_count": "samples per shard (default 1000)",
    "max_bytes": "bytes per shard (default 256 MB)",
    "format": "image encoding: png (lossless, default) | jpg",
    "imgsz": "image size for synthetic shapes data (default: the task's)",
    "seed": "seed of the split when the data has no val split (default 0)",
}


def task_data(task: str, data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) of ``data`` read by ``task``'s own readers."""
    spec = get_task(task)
    if spec.data_sources is None:
        raise ConfigError(f"task {task} has no data of its own to pack or draw")
    return _load(spec.data_sources)(data, imgsz, seed)


def run_pack(args: dict[str, str]) -> dict[str, Any]:
    """``cvcraft pack data=... out=... [task=...]``: write train/ and val/ shard folders."""
    task = args.get("task") or list_tasks()[0]
    try:
        max_count = int(args.get("max_count") or 1000)
        max_bytes = int(float(args.get("max_bytes") or (256 << 20)))
        seed = int(args.get("seed") or 0)
        imgsz = int(args["imgsz"]) if args.get("imgsz") else None
    except ValueError as e:
        raise ConfigError(f"pack: max_count/max_bytes/seed/imgsz must be numbers ({e})") from None
    train, val = task_data(task, str(args["data"]), imgsz, seed)
    out = Path(args["out"])
    result: dict[str, Any] = {}
    for split, part in (("train", train), ("val", val)):
        meta = write_shards(
            part, out / split, max_count, max_bytes, image_format=args.get("format") or "png"
        )
        result[split] = {"count": meta["count"], "shards": len(meta["shards"])}
        print(f"{split}: {meta['count']} samples in {len(meta['shards'])} shard(s) under {out}")
    return result


AUGMENT_KEYS: dict[str, str] = {
    "data": "dataset: anything `train classify` takes, a COCO/YOLO/VOC dataset, or 'shapes'",
    "pipeline": "YAML file with a list of transform specs (or augment: [...]), or a builtin: "
    "default (what training does with default keys) | none | mosaic | mixup | cutmix",
    "out": "output PNG (default augment_grid.png)",
    "n": "number of samples shown (default 16)",
    "seed": "seed of the augmentation draws (default 0)",
    "task": "a registered task, or auto (default: detect for 'shapes' and detection "
    "datasets, segment for mask folders and mask YAMLs, else classify)",
    "imgsz": "image size for the default pipelines and for 'shapes' scenes (default: the "
    "task's, 32 for classify)",
    "cols": "grid columns (default: ceil(sqrt(n)))",
    "alpha": "mixup / cutmix Beta alpha for those builtins (default 1.0)",
}


def resolve_task(data: str, task: str) -> str:
    """``auto`` -> detect for 'shapes' and COCO/YOLO/VOC datasets, segment for mask folders
    and mask YAMLs, else classify."""
    if task != "auto":
        return task
    if re.fullmatch(r"shapes(:\d+)?", data) and not os.path.exists(data):
        return "detect"
    for name in ("detect", "segment"):
        try:
            task_data(name, data, None, 0)
            return name
        except CvcraftError:  # not this task's data: the next reader decides
            continue
    return "classify"


def run_augment(args: dict[str, str]) -> Path:
    """The ``cvcraft augment`` command: draw ``n`` augmented samples into ``out``; returns it.
    The data is read by the task's own readers and ``pipeline=default`` is the task's own
    training dataset, so the grid shows what ``cvcraft train TASK data=...`` trains on."""
    data = args["data"]
    task = args.get("task", "auto")
    if task != "auto" and task not in list_tasks():
        raise ConfigError(f"task={task!r}: use auto or one of {', '.join(list_tasks())}")
    task = resolve_task(data, task)
    spec = get_task(task)
    pipeline = args.get("pipeline", "default")
    imgsz = int(args.get("imgsz") or spec.default_imgsz)
    seed = int(args.get("seed", 0))
    n = int(args.get("n", 16))
    if data == "shapes" and not os.path.exists(data):
        data = f"shapes:{max(n, 8)}"  # render only the scenes shown (and a few partners)
    train, _ = task_data(task, data, imgsz, seed)
    out = render_augment_grid(
        train,
        spec.target_kind,
        pipeline,
        n=n,
        seed=seed,
        imgsz=imgsz,
        cols=int(args.get("cols") or 0),
        alpha=float(args.get("alpha", 1.0)),
        out=args.get("out") or "augment_grid.png",
        train_preview=_load(spec.train_preview) if spec.train_preview else None,
    )
    print(f"wrote {out} (task={task}, pipeline={pipeline})")
    return out
