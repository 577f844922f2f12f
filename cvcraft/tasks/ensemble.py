"""Ensembles of trained runs: average the members' probabilities on the val split, and
measure the gain over the best member.

Each member is a checkpoint of the same task and classes; each is evaluated with its own
inference settings (normalization, thresholds are re-tuned on the ensemble), on the val
split of ``data`` read at the first member's input size. ``mode=mean`` averages the
probabilities (sigmoid for multilabel, softmax for classify); ``mode=weighted`` uses
``ensemble_weights=`` (normalized to sum 1); ``mode=vote`` (classify) is the majority of
the members' top-1 classes, ties broken by the mean probability. ``ensemble.json`` holds
every member's metrics, the ensemble's, and ``gain`` (ensemble - best member, on the
task's monitor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvcraft.errors import CheckpointError, ConfigError
from cvcraft.metrics.multilabel import multilabel_metrics
from cvcraft.tasks.detect_ensemble import DETECT_ENSEMBLE_KEYS, run_detect_ensemble
from cvcraft.tasks.registry import get_task, task_config

ENSEMBLE_KEYS: dict[str, str] = {
    "task": "multilabel | classify | detect",
    "weights": "comma-separated checkpoints (best.pt of each run); detect: one number per preds",
    "data": "dataset whose val split is scored (default: the first run's config)",
    "mode": "mean (default) | weighted | vote (classify: majority of top-1 classes)",
    "ensemble_weights": "weighted mode: one weight per checkpoint, comma-separated",
    "out": "folder for ensemble.json and ensemble_predictions.npz (detect: the fused JSON)",
    "device": "auto | cpu | cuda",
    **{k: f"detect: {v}" for k, v in DETECT_ENSEMBLE_KEYS.items() if k not in ("weights", "out")},
}
ENSEMBLE_TASKS = ("multilabel", "classify", "detect")


def member_probabilities(task: str, cfg: Any, weights: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """(probabilities (N, C), targets, the task object: its ``val_data``) of checkpoint
    ``weights`` on the val split of ``cfg.data``, read as ``BaseTask.validate`` reads it."""
    from cvcraft.engine.device import select_device

    cls = get_task(task).load_class()
    device = select_device(cfg.device)
    model, state = cls.load_model(weights, device)
    t = cls(cfg)
    t.device = device
    t.classes = list(state["classes"])
    t.apply_checkpoint(state)
    splits = t.load_splits()
    if list(splits.classes) != t.classes:
        raise CheckpointError(f"{weights}: trained on other classes than {cfg.data} has")
    t.val_data = splits.val
    loader = t.build_val_loader(splits)
    probs, targets = [], []
    with torch.no_grad():
        for batch in loader:
            logits = t.eval_forward(model, batch)
            if task == "multilabel":
                probs.append(logits.sigmoid().cpu().numpy())
                targets.append(batch["multi_hot"].numpy())
            else:
                probs.append(logits.softmax(1).cpu().numpy())
                targets.append(batch["labels"].numpy())
    return np.concatenate(probs), np.concatenate(targets), t


def score(task: str, probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """The task's metrics of averaged probabilities: multilabel's full set; classify's
    top-1 accuracy and mean negative log-likelihood."""
    if task == "multilabel":
        m = multilabel_metrics(probs, targets)
        return {k: v for k, v in m.items() if isinstance(v, (int, float))}
    p_true = probs[np.arange(len(targets)), targets]
    return {
        "top1": float((probs.argmax(1) == targets).mean()),
        "nll": float(-np.log(np.clip(p_true, 1e-12, None)).mean()),
    }


def vote(probs: np.ndarray) -> np.ndarray:
    """Majority vote of M members' top-1 classes (M, N, C) -> (N, C) vote shares plus a
    tie-breaking 1e-6 x mean probability, so the argmax is the most-voted class and, among
    equally voted ones, the most probable on average."""
    m, n, c = probs.shape
    votes = np.zeros((n, c))
    np.add.at(votes, (np.tile(np.arange(n), m), probs.argmax(2).ravel()), 1.0)
    return votes / m + 1e-6 * probs.mean(0)


def run_ensemble(args: dict[str, Any]) -> dict[str, Any]:
    """``cvcraft ensemble multilabel weights=a.pt,b.pt [data=...] [mode=mean|weighted]``."""
    task = str(args.get("task") or "")
    if task not in ENSEMBLE_TASKS:
        raise ConfigError(f"ensemble: task {task!r} unsupported; use one of {ENSEMBLE_TASKS}")
    if task == "detect":  # fuses saved predictions (boxes), not checkpoints
        return run_detect_ensemble({k: v for k, v in args.items() if k != "task"})
    detect_only = sorted(set(args) & (set(DETECT_ENSEMBLE_KEYS) - {"weights", "out"}))
    if detect_only:
        raise ConfigError(f"ensemble {task}: {', '.join(detect_only)} are keys of ensemble detect")
    paths = [p.strip() for p in str(args.get("weights") or "").split(",") if p.strip()]
    if len(paths) < 2:
        raise ConfigError("ensemble needs weights=a.pt,b.pt (two or more checkpoints)")
    for p in paths:
        if not Path(p).is_file():
            raise ConfigError(f"ensemble: weights {p}: no such file")
    mode = str(args.get("mode") or "mean")
    if mode == "weighted":
        raw = str(args.get("ensemble_weights") or "")
        try:
            w = np.array([float(v) for v in raw.split(",") if v.strip()])
        except ValueError:
            raise ConfigError(f"ensemble_weights={raw!r}: comma-separated numbers") from None
        if len(w) != len(paths) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(
                f"ensemble_weights: {len(paths)} non-negative numbers (not all 0) needed"
            )
    elif mode in ("mean", "vote"):
        if mode == "vote" and task != "classify":
            raise ConfigError("ensemble: mode=vote is for classify; use mean or weighted")
        w = np.ones(len(paths))
    else:
        raise ConfigError(f"ensemble: mode={mode!r} must be mean, weighted or vote")
    w = w / w.sum()
    first = torch.load(paths[0], map_location="cpu", weights_only=True)
    values: dict[str, Any] = {"weights": paths[0], "device": args.get("device") or "auto"}
    values["data"] = args.get("data") or _run_data(paths[0])
    values["imgsz"] = int(first.get("imgsz", 32))
    members, probs, targets = [], [], None
    for p in paths:
        cfg = task_config(task, {**values, "weights": p, "workers": 0, "progress": False})
        pr, tg, _ = member_probabilities(task, cfg, p)
        if targets is not None and not np.array_equal(tg, targets):
            raise CheckpointError(f"{p}: its val data differ from the first member's")
        targets = tg
        probs.append(pr)
        members.append({"weights": p, **score(task, pr, tg)})
    avg = np.tensordot(w, np.stack(probs), axes=1)  # (N, C)
    if mode == "vote":
        avg = vote(np.stack(probs))
    ens = score(task, avg, targets)
    monitor = "map" if task == "multilabel" else "top1"
    best = max(m[monitor] for m in members)
    result = {"task": task, "mode": mode, "member_weights": w.tolist(), "members": members,
              "ensemble": ens, "monitor": monitor, "best_member": best,
              "gain": ens[monitor] - best}  # fmt: skip
    out = Path(str(args.get("out") or f"runs/{task}/ensemble"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble.json").write_text(json.dumps(result, indent=2))
    np.savez_compressed(out / "ensemble_predictions.npz", scores=avg, targets=targets)
    print(f"{monitor}: ensemble {ens[monitor]:.4f}, best member {best:.4f}, "
          f"gain {result['gain']:+.4f}; results in {out}")  # fmt: skip
    return result


def _run_data(weights: str) -> str:
    """The ``data`` key of the run that wrote ``weights`` (its config.yaml)."""
    import yaml

    cfg_file = Path(weights).parent / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"ensemble: pass data= (no config.yaml next to {weights})")
    return str((yaml.safe_load(cfg_file.read_text()) or {}).get("data"))
