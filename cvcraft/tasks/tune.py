"""``cvcraft tune TASK data=... space=space.yaml trials=N out=DIR``: hyperparameter search on
Optuna.

Each trial is an ordinary training run of the task (its own run folder under ``out``) with
the parameters the sampler (TPE) draws from the search space; the validation metric of
every epoch is reported through the Trainer's epoch hook so the pruner (median or
Hyperband) can stop a poor trial early. The study lives in Optuna's journal file
(``out/study.log``): a search killed midway resumes where it stopped, and several
``cvcraft tune`` processes given the same ``out`` share one study. At the end the best
trial's resolved config is written as ``best.yaml`` (``cvcraft train TASK --config
best.yaml`` reruns it) and the optimisation history, parameter importances and parallel
coordinates are plotted in ``out/plots``.

The search space YAML maps config keys to distributions::

    lr: {type: float, low: 0.001, high: 0.3, log: true}
    optimizer: {type: categorical, choices: [sgd, adamw]}
    batch: {type: int, low: 16, high: 64, step: 16}
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from cvcraft.errors import ConfigError
from cvcraft.registry import did_you_mean
from cvcraft.tasks.registry import get_task, task_config

TUNE_KEYS: dict[str, str] = {
    "task": "the task to tune (positional: cvcraft tune classify ...)",
    "space": "search-space YAML: {key: {type: float|int|categorical, low, high, log, choices}}",
    "trials": "trials to finish in this study (counting those a killed search finished)",
    "out": "study folder (journal, trial runs, best.yaml, plots); default runs/tune/<task>",
    "metric": "metric to optimise (default: the task's monitor)",
    "direction": "max | min (default: the metric's direction)",
    "pruner": "median | hyperband | none (default median)",
    "seed": "sampler seed (default 0)",
}
SPACE_TYPES = ("float", "int", "categorical")


def load_space(path: str | Path, config_cls: type) -> dict[str, dict[str, Any]]:
    """The search space, checked: known config keys, known types, complete bounds."""
    p = Path(path)
    try:
        space = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError(f"space={p}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"space={p}: invalid YAML: {e}") from None
    if not space or not isinstance(space, dict):
        raise ConfigError(f"space={p}: the search space is empty; map config keys to ranges")
    known = {f.name for f in fields(config_cls)}
    for key, dist in space.items():
        if key not in known:
            raise ConfigError(
                f"space={p}: {key!r} is not a config key of the task.{did_you_mean(key, known)}"
            )
        if not isinstance(dist, dict) or dist.get("type") not in SPACE_TYPES:
            raise ConfigError(f"space={p}: {key}: give type: one of {', '.join(SPACE_TYPES)}")
        need = ("choices",) if dist["type"] == "categorical" else ("low", "high")
        missing = [n for n in need if n not in dist]
        if missing:
            raise ConfigError(f"space={p}: {key} ({dist['type']}) needs {', '.join(missing)}")
    return space


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One draw of every parameter of the space from ``trial``."""
    out: dict[str, Any] = {}
    for key, d in space.items():
        if d["type"] == "float":
            out[key] = trial.suggest_float(key, d["low"], d["high"], log=bool(d.get("log")))
        elif d["type"] == "int":
            out[key] = trial.suggest_int(
                key, d["low"], d["high"], step=int(d.get("step", 1)), log=bool(d.get("log"))
            )
        else:
            out[key] = trial.suggest_categorical(key, list(d["choices"]))
    return out


class PruneOnMetric:
    """Trainer callback: report the metric of every evaluated epoch; stop a poor trial."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, Any]) -> None:
        import optuna

        if self.metric not in row:
            if any(k not in ("epoch", "train_loss", "lr", "train_ips", "epoch_time") for k in row):
                raise ConfigError(
                    f"metric={self.metric!r} is not a metric of this task; it reports "
                    f"{', '.join(k for k in row if k != 'epoch')}"
                )
            return  # an epoch without evaluation (val_interval > 1)
        self.trial.report(float(row[self.metric]), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch + 1}: {self.metric}={row[self.metric]:.4g}")


def run_tune(args: dict[str, Any]) -> dict[str, Any]:
    """The ``cvcraft tune`` command; ``args`` are TUNE_KEYS plus fixed task keys."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from cvcraft.engine.trainer import Trainer

    task = args.pop("task", None) or "classify"
    spec = get_task(task)
    tune = {k: args.pop(k) for k in list(args) if k in TUNE_KEYS}
    if not tune.get("space"):
        raise ConfigError("tune needs space=space.yaml (config keys -> ranges)")
    space = load_space(tune["space"], spec.config)
    fixed = dict(args)  # every other key: a fixed task setting, checked like `train`'s
    task_config(task, fixed)
    trials = int(tune.get("trials", 10))
    if trials < 1:
        raise ConfigError(f"trials={trials} must be >= 1")
    metric = str(tune.get("metric") or spec.monitor)
    direction = str(tune.get("direction") or spec.metric_mode(metric))
    if direction not in ("max", "min"):
        raise ConfigError(f"direction={direction!r}: use max or min")
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    pruner = str(tune.get("pruner", "median"))
    if pruner not in pruners:
        raise ConfigError(f"pruner={pruner!r}: use median, hyperband or none")
    out = Path(tune.get("out") or Path("runs") / "tune" / task)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / "study.log")))
    study = optuna.create_study(
        study_name=f"cvcraft-{task}",
        storage=storage,
        load_if_exists=True,
        direction="maximize" if direction == "max" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=int(tune.get("seed", 0))),
        pruner=pruners[pruner](),
    )
    task_cls = spec.load_class()
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        over = {**fixed, **params, "out": str(out / f"trial_{trial.number}"), "plots": "false"}
        cfg = task_config(task, over)
        final = Trainer(task_cls(cfg), cfg, callbacks=[PruneOnMetric(trial, metric)]).fit()
        return float(final[metric])

    done = len(study.get_trials(states=finished))
    if done:
        print(f"tune: resuming {out / 'study.log'} ({done} trial(s) finished)")
    for _ in range(max(0, trials - done)):
        study.optimize(objective, n_trials=1, catch=())
    return write_results(study, out)


def write_results(study: Any, out: Path) -> dict[str, Any]:
    """best.yaml (the best trial's resolved config, runnable with --config) and the plots."""
    best = study.best_trial
    cfg = yaml.safe_load((out / f"trial_{best.number}" / "config.yaml").read_text())
    for k in ("out", "resume"):
        cfg.pop(k, None)
    (out / "best.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    plot_study(study, out / "plots")
    states = [t.state.name for t in study.trials]
    summary = {
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "trials": {s: states.count(s) for s in sorted(set(states))},
    }
    print(f"tune: best trial {best.number}: {best.value:.4g} with {best.params}")
    print(f"tune: {out / 'best.yaml'} reruns it with --config")
    return summary


def plot_study(study: Any, folder: Path) -> None:
    """Optimisation history, parallel coordinates and (with 2+ complete trials) parameter
    importances, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ov

    folder.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    plots = [("history", ov.plot_optimization_history), ("parallel", ov.plot_parallel_coordinate)]
    if len(complete) >= 2:
        plots.append(("importances", ov.plot_param_importances))
    for name, fn in plots:
        ax = fn(study)
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
