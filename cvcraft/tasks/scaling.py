"""``cvcraft scaling TASK data=... models=a,b,c fractions=0.25,0.5,1 epochs=...``: a small
scaling-law study.

It trains every model of a ladder on every fraction of the training data (ordinary runs of
the task under ``out``), then fits the power laws of the notes to the final validation
losses: ``L(N) = a * N^(-alpha) + c`` over the models' parameter counts N (at the largest
data fraction) and ``L(D) = a * D^(-alpha) + c`` over the training-data fraction D (with the
largest model; D's unit only rescales ``a``). ``scaling.json`` has the fitted parameters
with their standard errors; ``plots/scaling.png`` shows the points, the fits and a 95 %
band extrapolated one decade beyond the largest point (from the fit's parameter covariance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.tasks.registry import get_task, task_config

SCALING_KEYS: dict[str, str] = {
    "task": "the task (positional: cvcraft scaling classify ...)",
    "models": "comma-separated model names, small to large (the N axis: their parameters)",
    "widths": "comma-separated widths of one model= (model_kwargs width, e.g. resnet20: "
    "first-stage channels); an alternative N axis to models=",
    "fractions": "comma-separated training-data fractions in (0, 1] (the D axis)",
    "out": "study folder (default runs/scaling/<task>)",
    "metric": "the loss to fit (default val_loss)",
}


def power_law(x: np.ndarray, a: float, alpha: float, c: float) -> np.ndarray:
    """``a * x^(-alpha) + c``: a loss falling as a power of size toward an irreducible c."""
    return a * np.power(x, -alpha) + c


def fit_power_law(x: Any, y: Any) -> dict[str, Any]:
    """Least-squares fit of ``power_law`` (scipy ``curve_fit``) -> a, alpha, c, their
    standard errors and the covariance. Needs at least 3 points."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3:
        raise ConfigError(f"a power-law fit needs at least 3 points, got {len(x)}")
    # x is rescaled to its largest value so a, alpha, c start on comparable scales
    scale = float(x.max())
    p0 = (max(float(y.max() - y.min()), 1e-3), 0.5, float(y.min()) * 0.5)
    params, cov = curve_fit(power_law, x / scale, y, p0=p0, maxfev=20000)
    a, alpha, c = params
    a_abs = a * scale**alpha  # back to the unscaled x: a * (x/s)^-alpha = (a s^alpha) x^-alpha
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    return {"a": float(a_abs), "alpha": float(alpha), "c": float(c),
            "alpha_err": float(err[1]), "c_err": float(err[2]), "scale": scale,
            "params_scaled": params.tolist(), "cov_scaled": cov.tolist()}  # fmt: skip


def band(fit: dict[str, Any], x: np.ndarray, n: int = 400, seed: int = 0) -> np.ndarray | None:
    """2.5 and 97.5 percentiles of the fitted curve at ``x`` over parameter draws from the
    fit's covariance -> (2, len(x)); None when the covariance is undetermined (as many
    points as parameters: three points fit exactly and say nothing about the error)."""
    rng = np.random.default_rng(seed)
    mean, cov = np.asarray(fit["params_scaled"]), np.asarray(fit["cov_scaled"])
    if not np.isfinite(cov).all():
        return None
    draws = rng.multivariate_normal(mean, cov, size=n, check_valid="ignore")
    curves = np.stack([power_law(x / fit["scale"], *d) for d in draws])
    return np.nanpercentile(curves, [2.5, 97.5], axis=0)


def run_scaling(args: dict[str, Any]) -> dict[str, Any]:
    """The ``cvcraft scaling`` command; keys that are not SCALING_KEYS are fixed settings."""
    from cvcraft.engine.trainer import Trainer

    task = args.pop("task", None) or "classify"
    spec = get_task(task)
    keys = {k: args.pop(k) for k in list(args) if k in SCALING_KEYS}
    ladder = _ladder(keys, args)
    fractions = [float(f) for f in str(keys.get("fractions", "1.0")).split(",") if f]
    if len(fractions) < 1:
        raise ConfigError("scaling needs fractions=... (e.g. fractions=0.25,0.5,1)")
    if not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"fractions={fractions}: each must be in (0, 1]")
    metric = str(keys.get("metric", "val_loss"))
    out = Path(keys.get("out") or Path("runs") / "scaling" / task)
    fixed = dict(args)
    runs: list[dict[str, Any]] = []
    task_cls = spec.load_class()
    for model, extra in ladder:
        for frac in fractions:
            over = {**fixed, **extra, "fraction": str(frac), "plots": "false",
                    "out": str(out / f"{model}_f{frac}")}  # fmt: skip
            cfg = task_config(task, over)
            trainer = Trainer(task_cls(cfg), cfg)
            final = trainer.fit()
            if metric not in final:
                raise ConfigError(f"metric={metric!r} is not a metric of task {task}")
            n_params = sum(p.numel() for p in trainer.module.parameters())
            runs.append({"model": model, "fraction": frac, "params": n_params,
                         metric: float(final[metric])})  # fmt: skip
    result: dict[str, Any] = {"runs": runs, "metric": metric}
    big_f = max(fractions)
    by_n = sorted((r for r in runs if r["fraction"] == big_f), key=lambda r: r["params"])
    biggest = ladder[-1][0]
    by_d = sorted((r for r in runs if r["model"] == biggest), key=lambda r: r["fraction"])
    for key, pts, x in (("L(N)", by_n, "params"), ("L(D)", by_d, "fraction")):
        if len({r[x] for r in pts}) >= 3:
            xs, ys = [r[x] for r in pts], [r[metric] for r in pts]
            result[key] = {**fit_power_law(xs, ys), "x": xs, "y": ys, "axis": x}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=1))
    plot_scaling(result, out / "plots" / "scaling.png")
    return result


def _ladder(keys: dict[str, Any], args: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The N axis as (run name, config overrides): ``models=a,b,c`` or one ``model=`` at
    ``widths=w1,w2,w3`` (passed as ``model_kwargs: {width: w}``)."""
    models = [m for m in str(keys.get("models", "")).split(",") if m]
    widths = [w for w in str(keys.get("widths", "")).split(",") if w]
    if models and widths:
        raise ConfigError("scaling takes models=a,b,c or model=NAME widths=w1,w2,..., not both")
    if widths:
        model = args.pop("model", None)
        if not model:
            raise ConfigError("widths= needs the model whose width it sets: model=resnet20")
        try:
            ws = [int(w) for w in widths]
        except ValueError:
            raise ConfigError(f"widths={','.join(widths)}: each must be an integer") from None
        return [(f"{model}_w{w}", {"model": model, "model_kwargs": {"width": w}}) for w in ws]
    if not models:
        raise ConfigError("scaling needs models=a,b,c (or model=NAME widths=w1,w2,...)")
    return [(m, {"model": m}) for m in models]


def plot_scaling(result: dict[str, Any], path: Path) -> None:
    """Points, fitted power laws and their 95 % bands, one decade of extrapolation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result["metric"]
    panels = [k for k in ("L(N)", "L(D)") if k in result]
    if not panels:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels):
        fit = result[key]
        xs, ys = np.array(fit["x"], np.float64), np.array(fit["y"])
        grid = np.geomspace(xs.min(), xs.max() * 10, 100)
        b = band(fit, grid)
        if b is not None:
            ax.fill_between(grid, b[0], b[1], alpha=0.25, label="95% band")
        ax.plot(grid, power_law(grid / fit["scale"], *fit["params_scaled"]), label="fit")
        ax.scatter(xs, ys, color="k", zorder=3, label="runs")
        ax.set_xscale("log")
        ax.set_xlabel("parameters" if fit["axis"] == "params" else "training fraction")
        ax.set_ylabel(metric)
        ax.set_title(f"{key}: alpha={fit['alpha']:.3f}±{fit['alpha_err']:.3f}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
