"""``cvcraft attack``: robust accuracy against the perturbation budget (table + plot) and a
grid of adversarial examples with their perturbation.

Attacks work on pixels in [0, 1]: the checkpoint's preprocessing is folded into the
attacked model (``PixelModel``), so eps is in pixel units (8/255 = 8 grey levels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvcraft.attacks import fgsm, pgd, pgd_l2
from cvcraft.engine.device import select_device
from cvcraft.errors import ConfigError
from cvcraft.tasks.classify.classic import refuse_classic
from cvcraft.tasks.classify.task import PixelModel
from cvcraft.tasks.model_tools import (
    int_arg,
    load_classifier_any,
    out_dir,
    parse_number,
    parse_numbers,
    preprocess_of,
    print_table,
    val_loader,
    write_table,
)
from cvcraft.viz.adversarial import plot_adversarial_grid, plot_robustness

ATTACK_KEYS = {
    "weights": "classification checkpoint (runs/.../best.pt)",
    "data": "dataset the checkpoint was trained on (its validation split is attacked)",
    "method": "fgsm | pgd | pgd_l2, comma-separated (default fgsm,pgd)",
    "eps": "L-inf budgets in pixel units, comma-separated (default 0,1/255,2/255,4/255,8/255)",
    "eps_l2": "L2 budgets for pgd_l2 (default 0,0.25,0.5,1)",
    "steps": "PGD steps (default 10)",
    "alpha": "PGD step size (default 2.5 * eps / steps, Madry et al.)",
    "n": "validation images attacked (default 500; 0 = all)",
    "batch": "batch size (default 64)",
    "seed": "seed of PGD's random start (default 0)",
    "grid": "adversarial examples shown (default 12)",
    "out": "output folder (default runs/attack)",
    "device": "cpu | cuda | cuda:N | mps (default cpu)",
}
_ATTACK_FNS = {"fgsm": fgsm, "pgd": pgd, "pgd_l2": pgd_l2}


def _attack(name: str, model: nn.Module, x, y, eps: float, steps: int, alpha, gen):
    if name == "fgsm" or eps == 0:
        return fgsm(model, x, y, eps)
    a = alpha if alpha is not None else 2.5 * eps / max(steps, 1)
    return _ATTACK_FNS[name](model, x, y, eps, a, steps, generator=gen)


def run_attack(args: dict[str, str]) -> list[dict[str, Any]]:
    """``cvcraft attack``: robust accuracy per method and eps (CSV/JSON + plot) and a grid of
    adversarial examples with their perturbation."""
    methods = [m.strip() for m in args.get("method", "fgsm,pgd").split(",") if m.strip()]
    for m in methods:
        if m not in _ATTACK_FNS:
            raise ConfigError(f"method={m!r}: choose from {', '.join(_ATTACK_FNS)}")
    eps_inf = parse_numbers(args.get("eps", "0,1/255,2/255,4/255,8/255"), "eps")
    eps_l2 = parse_numbers(args.get("eps_l2", "0,0.25,0.5,1"), "eps_l2")
    for e in eps_inf + eps_l2:
        if e < 0:
            raise ConfigError(f"eps={e} must be >= 0 (the perturbation budget)")
    steps = int_arg(args, "steps", 10)
    alpha = parse_number(args["alpha"], "alpha") if args.get("alpha") else None
    if alpha is not None and alpha <= 0:
        raise ConfigError(f"alpha={alpha} must be > 0")
    device = select_device(args.get("device", "cpu"))
    model, meta = load_classifier_any(args["weights"], device)
    refuse_classic(meta, "attack")
    pixel = PixelModel(model, preprocess_of(meta, device)).eval()
    loader = val_loader(meta, args["data"], int_arg(args, "n", 500), int_arg(args, "batch", 64, 1))
    seed, out, classes = int_arg(args, "seed", 0), out_dir(args, "attack"), list(meta["classes"])
    gen = torch.Generator(device=device).manual_seed(seed)
    correct: dict[tuple[str, float], int] = {}
    seen, grid_clean, grid_adv, grid_y = 0, [], [], []
    n_grid = int_arg(args, "grid", 12)
    show = ("pgd" if "pgd" in methods else methods[0], max(eps_inf) if eps_inf else 0.0)
    for b in loader:
        x = b["images"].to(device).float() / 255.0
        y = b["labels"].to(device)
        seen += len(y)
        for m in methods:
            for e in eps_l2 if m == "pgd_l2" else eps_inf:
                adv = _attack(m, pixel, x, y, e, steps, alpha, gen)
                with torch.no_grad():
                    hit = pixel(adv).argmax(1) == y
                correct[(m, e)] = correct.get((m, e), 0) + int(hit.sum())
                if (m, e) == show and len(grid_clean) < n_grid:
                    k = n_grid - len(grid_clean)
                    grid_clean += list(x[:k].cpu())
                    grid_adv += list(adv[:k].cpu())
                    grid_y += y[:k].tolist()
    rows = [{"method": m, "norm": "l2" if m == "pgd_l2" else "linf", "eps": e,
             "eps_255": round(e * 255, 3) if m != "pgd_l2" else "", "accuracy": c / max(seen, 1),
             "images": seen, "steps": 0 if m == "fgsm" else steps}
            for (m, e), c in correct.items()]  # fmt: skip
    write_table(out, "robustness", rows)
    for norm, unit in (("linf", " (x255)"), ("l2", " (L2)")):
        sel = [r for r in rows if r["norm"] == norm]
        if sel:
            curves = {m: [r["accuracy"] for r in sel if r["method"] == m] for m in methods}
            curves = {m: a for m, a in curves.items() if a}
            first = next(iter(curves))
            scale = 255 if norm == "linf" else 1
            xs = [r["eps"] * scale for r in sel if r["method"] == first]
            plot_robustness(xs, curves, out / f"robustness_{norm}.png", unit)
    if grid_clean:
        clean, adv = torch.stack(grid_clean), torch.stack(grid_adv)
        with torch.no_grad():
            pc = pixel(clean.to(device)).argmax(1).tolist()
            pa = pixel(adv.to(device)).argmax(1).tolist()
        tc = [f"clean: {classes[p]}\n(true: {classes[t]})" for p, t in zip(pc, grid_y)]
        ta = [f"{show[0]} {show[1] * 255:g}/255: {classes[p]}" for p in pa]
        plot_adversarial_grid(
            clean.permute(0, 2, 3, 1).numpy(), adv.permute(0, 2, 3, 1).numpy(), tc, ta,
            out / "adversarial_examples.png",
            right_clean=[p == t for p, t in zip(pc, grid_y)],
            right_adv=[p == t for p, t in zip(pa, grid_y)],
        )  # fmt: skip
    print_table(rows)
    print(f"attack: {seen} images; table, plots and examples in {out}")
    return rows
