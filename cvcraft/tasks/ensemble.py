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

Where the members come from: ``weights=a.pt,b.pt`` (any runs), ``snapshots=RUN`` (the
``snapshot<k>.pt`` a ``schedule=cosine_restarts cycles=M`` run saved at each cycle's end:
Huang et al.'s snapshot ensemble from one training run), or ``bagging=M set='{...}'``
(Breiman's bagging: M classify runs, member i trained on bootstrap resample ``bag=i`` of the
training split, written to ``out/bag<i>``).

``mode=stacking`` (Wolpert 1992) learns how to combine: the members' probabilities
side by side (``stack_features``: (N, M*C), one column per member dropped for two classes as
scikit-learn's ``StackingClassifier`` does) feed a scikit-learn ``LogisticRegression``. The
members never saw the val split, so the meta-learner is fit on it; its score is honest only
out of fold: ``stack_folds`` stratified folds of the val split, each predicted by a meta-learner
fit on the others. The meta-learner fit on the whole val split is saved (coefficients).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvcraft.errors import CheckpointError, ConfigError, DataError
from cvcraft.metrics.multilabel import multilabel_metrics
from cvcraft.tasks.detect_ensemble import DETECT_ENSEMBLE_KEYS, run_detect_ensemble
from cvcraft.tasks.registry import get_task, task_config

ENSEMBLE_KEYS: dict[str, str] = {
    "task": "multilabel | classify | detect",
    "weights": "comma-separated checkpoints (best.pt of each run); detect: one number per preds",
    "data": "dataset whose val split is scored (default: the first run's config)",
    "mode": "mean (default) | weighted | vote (classify: majority of top-1 classes) | stacking",
    "ensemble_weights": "weighted mode: one weight per checkpoint, comma-separated",
    "snapshots": "a run folder of schedule=cosine_restarts cycles=M: its snapshot<k>.pt",
    "bagging": "train this many bootstrap members (classify; keys from set=/config=) first",
    "set": "bagging: train keys as a YAML mapping, e.g. set='{data: shapes:600, epochs: 3}'",
    "config": "bagging: a YAML file of train keys",
    "stack_folds": "stacking: folds of the val split for the out-of-fold score (default 5)",
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


def bootstrap_indices(n: int, seed: int, member: int) -> np.ndarray:
    """Bagging member ``member``'s bootstrap resample: n draws with replacement from range(n),
    seeded by (seed, member), sorted (about 63 % of the items, some several times)."""
    return np.sort(np.random.default_rng([seed, 59, member]).integers(0, n, n))


def stack_features(probs: np.ndarray) -> np.ndarray:
    """Members' probabilities (M, N, C) side by side -> (N, M*C), member-major; with C = 2
    the first column of each member is dropped (it is 1 - the second), as scikit-learn's
    ``StackingClassifier`` does with ``predict_proba``."""
    m, n, c = probs.shape
    if c == 2:
        probs = probs[:, :, 1:]
    return np.ascontiguousarray(probs.transpose(1, 0, 2).reshape(n, -1))


def fit_meta(features: np.ndarray, targets: np.ndarray) -> Any:
    """The stacking meta-learner: scikit-learn's ``LogisticRegression`` (``StackingClassifier``'s
    default final estimator) fit on the stacked member probabilities."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(features, targets)


def stacking_oof(
    probs: np.ndarray, targets: np.ndarray, folds: int, seed: int = 0
) -> tuple[np.ndarray, Any]:
    """(out-of-fold meta probabilities (N, C), the meta-learner fit on all N): each stratified
    fold of the N items is predicted by a meta-learner fit on the other folds. Classes absent
    from a fold's training part get probability 0 there."""
    from cvcraft.data.folds import stratified_folds

    x = stack_features(probs)
    c = probs.shape[2]
    present = np.unique(targets)
    counts = np.bincount(targets, minlength=c)[present]
    if len(present) < 2:
        raise DataError("stacking: the val split has one class only; the meta-learner needs two")
    k = min(folds, int(counts.min()))
    if k < 2:
        raise DataError(
            f"stacking: a class has {int(counts.min())} val item(s); out-of-fold scoring needs "
            "two per class (a larger val split, or another mode=)"
        )
    ids = stratified_folds(targets, k, seed)
    out = np.zeros((len(targets), c))
    for f in range(k):
        tr, te = ids != f, ids == f
        meta = fit_meta(x[tr], targets[tr])
        out[np.ix_(te, meta.classes_)] = meta.predict_proba(x[te])
    return out, fit_meta(x, targets)


def train_keys(args: dict[str, Any], command: str) -> dict[str, Any]:
    """Train keys of a tool that trains runs: ``config=`` YAML file, then ``set=`` mapping."""
    import yaml

    keys: dict[str, Any] = {}
    if args.get("config"):
        keys.update(yaml.safe_load(Path(str(args["config"])).read_text()) or {})
    extra = args.get("set") or {}
    if isinstance(extra, str):
        extra = yaml.safe_load(extra) or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{command}: set= must be a YAML mapping like '{{epochs: 3}}'")
    keys.update(extra)
    return keys


def train_bagging(task: str, keys: dict[str, Any], members: int, out: Path) -> list[str]:
    """Train ``members`` runs of ``task``, run i on bootstrap resample ``bag=i`` of the
    training split (same val split), into ``out/bag<i>``; their best.pt paths."""
    from cvcraft.engine.trainer import Trainer

    if task != "classify":
        raise ConfigError(f"ensemble: bagging= trains classify members, not {task}")
    spec = get_task(task)
    paths = []
    for i in range(members):
        cfg = task_config(task, {**keys, "bag": i, "out": str(out / f"bag{i}")})
        Trainer(spec.load_class()(cfg), cfg).fit()
        paths.append(str(out / f"bag{i}" / "best.pt"))
    return paths


def member_paths(task: str, args: dict[str, Any], out: Path) -> list[str]:
    """The members' checkpoints from ``weights=``, ``snapshots=`` or ``bagging=`` (one)."""
    given = [k for k in ("weights", "snapshots", "bagging") if args.get(k)]
    if len(given) != 1:
        raise ConfigError(
            "ensemble needs one of weights=a.pt,b.pt (two or more checkpoints), snapshots=RUN "
            f"or bagging=M; got {given or 'none'}"
        )
    if given[0] == "snapshots":
        run = Path(str(args["snapshots"]))
        found = sorted(run.glob("snapshot*.pt"), key=lambda p: int(p.stem[8:] or 0))
        if len(found) < 2:
            raise ConfigError(
                f"ensemble: snapshots={run} holds {len(found)} snapshot<k>.pt; train with "
                "schedule=cosine_restarts cycles=M (M >= 2) to save one per cycle"
            )
        return [str(p) for p in found]
    if given[0] == "bagging":
        try:
            m = int(args["bagging"])
        except ValueError:
            raise ConfigError(f"bagging={args['bagging']!r} must be an integer") from None
        if m < 2:
            raise ConfigError(f"bagging={m}: an ensemble needs two or more members")
        return train_bagging(task, train_keys(args, "ensemble"), m, out)
    paths = [p.strip() for p in str(args["weights"]).split(",") if p.strip()]
    if len(paths) < 2:
        raise ConfigError("ensemble needs weights=a.pt,b.pt (two or more checkpoints)")
    for p in paths:
        if not Path(p).is_file():
            raise ConfigError(f"ensemble: weights {p}: no such file")
    return paths


def run_ensemble(args: dict[str, Any]) -> dict[str, Any]:
    """``cvcraft ensemble classify weights=a.pt,b.pt|snapshots=RUN|bagging=M [data=...]
    [mode=mean|weighted|vote|stacking]``."""
    task = str(args.get("task") or "")
    if task not in ENSEMBLE_TASKS:
        raise ConfigError(f"ensemble: task {task!r} unsupported; use one of {ENSEMBLE_TASKS}")
    if task == "detect":  # fuses saved predictions (boxes), not checkpoints
        return run_detect_ensemble({k: v for k, v in args.items() if k != "task"})
    detect_only = sorted(set(args) & (set(DETECT_ENSEMBLE_KEYS) - {"weights", "out"}))
    if detect_only:
        raise ConfigError(f"ensemble {task}: {', '.join(detect_only)} are keys of ensemble detect")
    mode = str(args.get("mode") or "mean")
    if mode not in ("mean", "weighted", "vote", "stacking"):
        raise ConfigError(f"ensemble: mode={mode!r} must be mean, weighted, vote or stacking")
    if mode in ("vote", "stacking") and task != "classify":
        raise ConfigError(f"ensemble: mode={mode} is for classify; use mean or weighted")
    out = Path(str(args.get("out") or f"runs/{task}/ensemble"))
    paths = member_paths(task, args, out)
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
    else:
        w = np.ones(len(paths))
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
    stacked = np.stack(probs)  # (M, N, C)
    extra: dict[str, Any] = {}
    if mode == "vote":
        avg = vote(stacked)
    elif mode == "stacking":
        folds = int(args.get("stack_folds") or 5)
        avg, meta = stacking_oof(stacked, targets, folds)
        extra["meta"] = {"coef": meta.coef_.tolist(), "intercept": meta.intercept_.tolist(),
                         "classes": meta.classes_.tolist(), "folds": folds}  # fmt: skip
    else:
        avg = np.tensordot(w, stacked, axes=1)  # (N, C)
    ens = score(task, avg, targets)
    monitor = "map" if task == "multilabel" else "top1"
    best = max(m[monitor] for m in members)
    result = {"task": task, "mode": mode, "member_weights": w.tolist(), "members": members,
              "ensemble": ens, "monitor": monitor, "best_member": best,
              "gain": ens[monitor] - best, **extra}  # fmt: skip
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
