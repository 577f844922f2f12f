"""k-fold cross-validation of a task: train one model per fold, then per-fold and
mean +- std metrics and the out-of-fold (OOF) predictions.

Each fold is an ordinary run (``<out>/fold<i>``) of the task with ``folds=k fold=i``: the
task pools its train and val data and validates on fold i (``data/folds.py``: stratified
folds for classify, iterative stratification for multilabel). ``kfold.json`` holds every
fold's scalar metrics and their mean and (population) std; ``oof_predictions.npz`` holds,
for every pooled item, the scores of the model that did not train on it (``scores``:
sigmoid / softmax probabilities of each fold's best.pt, ``targets``, ``fold``, ``paths``).

Tasks with fold support (``folds``/``fold`` keys): multilabel, classify.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.tasks.ensemble import member_probabilities, train_keys
from cvcraft.tasks.registry import get_task, task_config

KFOLD_KEYS: dict[str, str] = {
    "task": "the task (multilabel | classify)",
    "folds": "number of folds (default 5)",
    "out": "run folder (gets fold0..fold<k-1>, kfold.json, oof_predictions.npz)",
    "config": "a YAML file of the task's train keys",
    "set": "train keys as a YAML mapping, e.g. set='{data: shapes:600, epochs: 3}'",
}
FOLD_TASKS = ("multilabel", "classify")


def fold_summary(per_fold: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``mean`` and ``std`` (population, ddof 0) of every scalar metric all folds have."""
    keys = [k for k, v in per_fold[0].items() if isinstance(v, (int, float))]
    keys = [k for k in keys if all(isinstance(m.get(k), (int, float)) for m in per_fold)]
    values = {k: np.array([float(m[k]) for m in per_fold]) for k in keys}
    return {
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std()) for k, v in values.items()},
    }


def run_kfold(args: dict[str, Any]) -> dict[str, Any]:
    """``cvcraft kfold multilabel folds=5 out=DIR [config=train.yaml] [set='{...}']``."""
    task = str(args.get("task") or "")
    if task not in FOLD_TASKS:
        raise ConfigError(f"kfold: task {task!r} has no fold support; use one of {FOLD_TASKS}")
    try:
        folds = int(args.get("folds") or 5)
    except ValueError:
        raise ConfigError(f"kfold: folds={args.get('folds')!r} must be an integer") from None
    keys = train_keys(args, "kfold")
    out = Path(str(args.get("out") or f"runs/{task}/kfold"))
    return train_folds(task, keys, folds, out)


def kfold_from_config(task: str, cfg: Any) -> dict[str, Any]:
    """``cvcraft train classify ... folds=5`` (``fold`` left at -1): every fold, from the
    resolved train config; the folds go to ``<run folder>/fold<i>``."""
    from dataclasses import asdict

    from cvcraft.engine.trainer import resolve_run_dir

    if task not in FOLD_TASKS:
        raise ConfigError(f"task {task!r} has no fold support; use one of {FOLD_TASKS}")
    if cfg.devices > 1:
        raise ConfigError("folds= with devices > 1: train the folds one by one (fold=i)")
    out = resolve_run_dir(task, cfg)
    keys = {k: v for k, v in asdict(cfg).items() if k not in ("folds", "fold", "out", "resume")}
    return train_folds(task, keys, int(cfg.folds), out)


def train_folds(task: str, keys: dict[str, Any], folds: int, out: Path) -> dict[str, Any]:
    """Train fold 0 .. folds-1 of ``task`` with the train ``keys`` into ``out/fold<i>``, then
    write ``kfold.json`` (per fold, mean, std) and ``oof_predictions.npz``."""
    from cvcraft.engine.trainer import Trainer

    spec = get_task(task)
    per_fold: list[dict[str, Any]] = []
    oof: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    for f in range(folds):
        cfg = task_config(task, {**keys, "folds": folds, "fold": f, "out": str(out / f"fold{f}")})
        metrics = Trainer(spec.load_class()(cfg), cfg).fit()
        per_fold.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        best = str(out / f"fold{f}" / "best.pt")
        pcfg = task_config(task, {**keys, "folds": folds, "fold": f, "weights": best,
                                  "workers": 0, "progress": False})  # fmt: skip
        scores, targets, t = member_probabilities(task, pcfg, best)
        paths = np.array([t.val_data.describe(i) for i in range(len(t.val_data))])
        oof.append((t.fold_index, {"scores": scores, "targets": targets, "paths": paths}))
        print(f"fold {f}: {spec.monitor}={metrics.get(spec.monitor)}")
    n = sum(len(idx) for idx, _ in oof)
    first = oof[0][1]
    scores = np.zeros((n, first["scores"].shape[1]), np.float32)
    targets = np.zeros((n, *first["targets"].shape[1:]), first["targets"].dtype)
    fold_of = np.full(n, -1, np.int64)
    paths = np.empty(n, dtype=first["paths"].dtype if len(first["paths"]) else "<U1")
    paths = paths.astype(object)
    for f, (idx, arr) in enumerate(oof):
        scores[idx], targets[idx], fold_of[idx], paths[idx] = (
            arr["scores"], arr["targets"], f, arr["paths"],
        )  # fmt: skip
    np.savez_compressed(out / "oof_predictions.npz", scores=scores, targets=targets,
                        fold=fold_of, paths=paths.astype(str))  # fmt: skip
    summary = {"task": task, "folds": folds, "per_fold": per_fold, **fold_summary(per_fold)}
    (out / "kfold.json").write_text(json.dumps(summary, indent=2))
    m, s = summary["mean"].get(spec.monitor), summary["std"].get(spec.monitor)
    if m is not None:
        print(f"{spec.monitor}: {m:.4f} +- {s:.4f} over {folds} folds; results in {out}")
    return summary
