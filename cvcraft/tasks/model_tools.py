"""The model tools behind ``cvcraft explain | attack | prune | quantize | export``.

Each command has a ``XXX_KEYS`` dict (key -> help) and a ``run_xxx(args)`` runner taking the
command line's ``key=value`` strings; they read a classification checkpoint
(``weights=runs/.../best.pt``), rebuild the model with its classes and normalisation, and
write their pictures, tables and files into ``out`` (default ``runs/<command>``).

Attacks work on pixels in [0, 1]: the checkpoint's preprocessing is folded into the
attacked model (:class:`PixelModel`), so eps is in pixel units (8/255 = 8 grey levels).
Pruning writes a checkpoint that records the pruned widths (``pruned``), rebuilt by
:func:`load_classifier_any`; fine-tuning it is a training run (the trainer's job).
"""

from __future__ import annotations

import copy
import io
import json
import math
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.attacks import fgsm, pgd, pgd_l2
from cvcraft.data import ClassifyDataset, build_loader, load_classification, read_image
from cvcraft.data.io import list_images, write_image
from cvcraft.engine.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from cvcraft.engine.device import select_device
from cvcraft.engine.export import FORMATS, OnnxModel, export_model, load_torchscript
from cvcraft.engine.export import torchscript_metadata as _ts_meta
from cvcraft.engine.quantize import quantize_dynamic_linear, quantize_static, quantized_modules
from cvcraft.engine.trainer import weights_of
from cvcraft.errors import CheckpointError, ConfigError
from cvcraft.explain import CAM_METHODS, attention_rollout, class_activation_map
from cvcraft.models.profile import count_macs, measure_latency
from cvcraft.nn.prune import prune_l1_channels, prune_magnitude, shrink_to_widths, sparsity
from cvcraft.structures import Sample

# The classification task's pieces, imported in this one place.
from cvcraft.tasks.classify.task import ClassifyTask, evaluate_classifier
from cvcraft.transforms import default_classify_transforms
from cvcraft.transforms.normalize import Preprocess
from cvcraft.viz.adversarial import plot_adversarial_grid, plot_robustness
from cvcraft.viz.heatmap import overlay_heatmap, plot_heatmaps

META_KEYS = ("model_name", "num_classes", "in_chans", "classes", "imgsz", "model_kwargs",
             "normalize", "norm_stats", "pruned")  # fmt: skip
DISPLAY_SIDE = 256  # explain overlays are drawn at least this large


# -- argument parsing ----------------------------------------------------------------------
def parse_number(text: str, key: str) -> float:
    """``"0.03"`` or a fraction ``"8/255"`` -> float; a ConfigError naming ``key`` if neither."""
    try:
        return float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key}={text!r} is not a number (examples: 0.03, 8/255)") from None


def parse_numbers(text: str, key: str) -> list[float]:
    return [parse_number(t, key) for t in str(text).split(",") if t.strip()]


def parse_bool(text: str | bool, key: str) -> bool:
    v = str(text).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{key}={text!r}: use true or false")


def _int(args: dict[str, str], key: str, default: int, minimum: int = 0) -> int:
    try:
        v = int(args.get(key, default))
    except ValueError:
        raise ConfigError(f"{key}={args[key]!r} must be an integer") from None
    if v < minimum:
        raise ConfigError(f"{key}={v} must be >= {minimum}")
    return v


def _out_dir(args: dict[str, str], command: str) -> Path:
    out = Path(args.get("out") or f"runs/{command}")
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- models ----------------------------------------------------------------------------------
def checkpoint_metadata(state: dict[str, Any]) -> dict[str, Any]:
    """What inference needs from a checkpoint (classes, input size, normalisation...),
    JSON-able, as embedded in exported files."""

    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor | np.ndarray):
            return v.tolist()
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return {k: plain(state[k]) for k in META_KEYS if k in state}


def load_classifier_any(weights: str | Path, device: torch.device) -> tuple[nn.Module, dict]:
    """A classifier and its metadata from a cvcraft checkpoint (pruned ones included), an
    ONNX file (run by onnxruntime) or a TorchScript file written by ``cvcraft export`` /
    ``quantize``. ONNX/TorchScript models run on the CPU."""
    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"weights={weights}: no such file")
    if path.suffix == ".onnx":
        model: nn.Module = OnnxModel(path)
        return model, dict(model.metadata)
    if path.suffix in (".ts", ".torchscript"):
        return load_torchscript(path), _ts_meta(path)
    state = load_checkpoint(path)
    if state.get("task", "classify") != "classify" or "model_name" not in state:
        raise CheckpointError(
            f"{weights}: not a cvcraft classification checkpoint (task={state.get('task')!r}); "
            "pass a best.pt/last.pt written by `cvcraft train classify`"
        )
    model = ClassifyTask.model_from_checkpoint(state)
    pruned = state.get("pruned") or {}
    if pruned.get("widths"):
        shrink_to_widths(model, pruned["widths"])
    load_model_weights(model, weights_of(state), strict=True, source=str(weights))
    return model.to(device).eval(), state


def preprocess_of(meta: dict[str, Any], device: torch.device) -> Preprocess:
    """uint8-range batch -> the model's input, from the checkpoint's normalisation."""
    return Preprocess(meta.get("norm_stats"), meta.get("normalize", "none"), meta["in_chans"]).to(
        device
    )


class PixelModel(nn.Module):
    """``model(preprocess(255 x))``: a classifier on float pixels in [0, 1], what attacks
    perturb (so eps is in pixel units whatever the normalisation)."""

    def __init__(self, model: nn.Module, pre: nn.Module) -> None:
        super().__init__()
        self.model, self.pre = model, pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.pre(x * 255.0))


def _val_transform(meta: dict[str, Any]) -> Any:
    return default_classify_transforms(int(meta.get("imgsz", 224)), train=False)


def _val_split(meta: dict[str, Any], data: str) -> Any:
    """The validation split of ``data`` as the run made it (its seed and val_fraction)."""
    cfg = meta.get("config") or {}
    splits = load_classification(
        data, val_fraction=float(cfg.get("val_fraction", 0.1)), seed=int(cfg.get("seed", 0)),
        imgsz_hint=int(meta.get("imgsz", 32)),
    )  # fmt: skip
    if list(splits.classes) != list(meta["classes"]):
        raise CheckpointError(
            f"the checkpoint was trained on classes {list(meta['classes'])[:10]}, but "
            f"data={data} has {list(splits.classes)[:10]}; use data with the same classes"
        )
    return splits.val


def _loader(meta: dict[str, Any], data: str, n: int, batch: int) -> Any:
    val = _val_split(meta, data)
    if n and n < len(val):  # an evenly spread, deterministic subset
        val = val.subset(np.linspace(0, len(val) - 1, n).round().astype(np.int64))
    ds = ClassifyDataset(val, _val_transform(meta), seed=0)
    return build_loader(ds, batch, shuffle=False, workers=0, seed=0)


def _accuracy(model: nn.Module, loader: Any, pre: nn.Module, meta: dict, device) -> float:
    return float(evaluate_classifier(model, loader, pre, meta["num_classes"], device)["top1"])


def _size_bytes(model: nn.Module) -> tuple[int, int]:
    """(state_dict bytes, zlib-compressed bytes): sparsity shows in the second."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    raw = buf.getvalue()
    return len(raw), len(zlib.compress(raw, 6))


def _write_table(out: Path, name: str, rows: list[dict[str, Any]]) -> None:
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    (out / f"{name}.csv").write_text("\n".join(lines) + "\n")


def _print_table(rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    cells = [[f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


# -- explain -------------------------------------------------------------------------------
EXPLAIN_KEYS = {
    "weights": "classification checkpoint (runs/.../best.pt)",
    "source": "an image file or a folder of images",
    "method": f"{' | '.join(CAM_METHODS)} | rollout (ViT) (default gradcam)",
    "layer": "layer to explain, as in model.named_modules() (default: the last spatial map)",
    "class": "class name or index to explain (default: each image's top prediction)",
    "out": "output folder (default runs/explain)",
    "alpha": "heat-map opacity over the image (default 0.45)",
    "batch": "images per forward pass (default 16)",
    "device": "cpu | cuda | cuda:N | mps (default cpu)",
}


def _class_index(value: str | None, classes: list[str]) -> int | None:
    if value is None or value == "":
        return None
    if value in classes:
        return classes.index(value)
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
        return int(value)
    raise ConfigError(
        f"class={value!r} is neither a class name nor an index in [0, {len(classes)})"
    )


def run_explain(args: dict[str, str]) -> list[dict[str, Any]]:
    """``cvcraft explain``: one overlay PNG per image plus a summary grid and JSON."""
    method = args.get("method", "gradcam")
    if method not in (*CAM_METHODS, "rollout"):
        raise ConfigError(f"method={method!r}: choose one of {', '.join(CAM_METHODS)}, rollout")
    device = select_device(args.get("device", "cpu"))
    model, meta = load_classifier_any(args["weights"], device)
    if not isinstance(model, nn.Module) or isinstance(model, OnnxModel | torch.jit.ScriptModule):
        raise ConfigError("explain needs gradients: pass a .pt checkpoint, not an exported file")
    classes = list(meta["classes"])
    target = _class_index(args.get("class"), classes)
    pre, tf = preprocess_of(meta, device), _val_transform(meta)
    alpha = parse_number(args.get("alpha", "0.45"), "alpha")
    batch = _int(args, "batch", 16, 1)
    out = _out_dir(args, "explain")
    files = list_images(args["source"])
    rng = np.random.default_rng(0)
    results, shown, heats, titles = [], [], [], []
    for s in range(0, len(files), batch):
        chunk = files[s : s + batch]
        imgs = np.stack([tf(Sample(read_image(f)), rng).image for f in chunk])
        x = pre(torch.from_numpy(imgs).permute(0, 3, 1, 2).to(device))
        if method == "rollout":
            maps, logits = attention_rollout(model, x)
            layer, explained = "attention", logits.argmax(1)
        else:
            res = class_activation_map(model, x, args.get("layer") or None, method, target)
            maps, logits, layer, explained = res.maps, res.logits, res.layer, res.targets
        probs = logits.float().softmax(1).cpu()
        for f, img, heat, p, t in zip(chunk, imgs, maps.cpu().numpy(), probs, explained.tolist()):
            pred = int(p.argmax())
            why = classes[t] if t >= 0 else "(class-free)"
            title = f"{f.name}: {classes[pred]} {float(p[pred]):.2f}\n{method} for {why}"
            scale = max(1, math.ceil(DISPLAY_SIDE / max(img.shape[:2])))
            big = np.repeat(np.repeat(img, scale, 0), scale, 1)  # crisp pixels, no blur
            big_heat = np.kron(heat, np.ones((scale, scale), np.float32))
            path = out / f"{f.stem}_{method}.png"
            write_image(path, np.concatenate([big, overlay_heatmap(big, big_heat, alpha)], 1))
            results.append({"path": str(f), "overlay": str(path), "pred": classes[pred],
                            "score": float(p[pred]), "explained": why, "layer": layer})  # fmt: skip
            if len(shown) < 16:
                shown.append(big), heats.append(big_heat), titles.append(title)
    plot_heatmaps(shown, heats, titles, out / "explain_grid.png", alpha=alpha)
    (out / "explain.json").write_text(json.dumps(results, indent=1))
    print(f"explain: {len(results)} overlays ({method}, layer {results[0]['layer']}) in {out}")
    return results


# -- attack --------------------------------------------------------------------------------
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
    steps = _int(args, "steps", 10)
    alpha = parse_number(args["alpha"], "alpha") if args.get("alpha") else None
    if alpha is not None and alpha <= 0:
        raise ConfigError(f"alpha={alpha} must be > 0")
    device = select_device(args.get("device", "cpu"))
    model, meta = load_classifier_any(args["weights"], device)
    pixel = PixelModel(model, preprocess_of(meta, device)).eval()
    loader = _loader(meta, args["data"], _int(args, "n", 500), _int(args, "batch", 64, 1))
    seed, out, classes = _int(args, "seed", 0), _out_dir(args, "attack"), list(meta["classes"])
    gen = torch.Generator(device=device).manual_seed(seed)
    correct: dict[tuple[str, float], int] = {}
    seen, grid_clean, grid_adv, grid_y = 0, [], [], []
    n_grid = _int(args, "grid", 12)
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
    _write_table(out, "robustness", rows)
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
    _print_table(rows)
    print(f"attack: {seen} images; table, plots and examples in {out}")
    return rows


# -- prune ---------------------------------------------------------------------------------
PRUNE_KEYS = {
    "weights": "classification checkpoint (runs/.../best.pt)",
    "method": "magnitude (unstructured: zeros) | l1_channel (removes channels) "
    "(default l1_channel)",
    "amount": "fraction removed: of weights (magnitude) or of each chain's channels (default 0.5)",
    "scope": "magnitude: global | layer (default global)",
    "data": "dataset for accuracy before/after (optional; its validation split)",
    "n": "validation images for the accuracy (default 0 = all)",
    "batch": "batch size (default 64)",
    "out": "pruned checkpoint (default: beside weights, pruned_<method>.pt)",
    "device": "cpu | cuda | cuda:N | mps (default cpu)",
}


def profile_row(name: str, model: nn.Module, meta: dict, acc: float | None) -> dict[str, Any]:
    """Params (and non-zero), MACs, state_dict size (raw and zlib) and batch-1 CPU latency."""
    c, s = int(meta["in_chans"]), int(meta.get("imgsz", 224))
    cpu = copy.deepcopy(model).cpu().eval()
    size, packed = _size_bytes(cpu)
    params = sum(p.numel() for p in cpu.parameters())
    return {
        "model": name,
        "params": params,
        "nonzero_params": int(sum(int((p != 0).sum()) for p in cpu.parameters())),
        "mmacs": count_macs(cpu, (c, s, s))["total"] / 1e6,
        "size_mb": size / 1e6,
        "zip_mb": packed / 1e6,
        "latency_ms": measure_latency(cpu, (c, s, s), batch=1, warmup=3, reps=20),
        "top1": acc if acc is not None else "",
    }


def run_prune(args: dict[str, str]) -> dict[str, Any]:
    """``cvcraft prune``: prune a checkpoint, write the pruned checkpoint and a table of
    params / MACs / size / latency (/ accuracy with ``data=``) before and after."""
    method = args.get("method", "l1_channel")
    if method not in ("magnitude", "l1_channel"):
        raise ConfigError(f"method={method!r}: choose magnitude or l1_channel")
    amount = parse_number(args.get("amount", "0.5"), "amount")
    device = select_device(args.get("device", "cpu"))
    weights = Path(args["weights"])
    model, state = load_classifier_any(weights, device)
    if not isinstance(state, dict) or "model_name" not in state:
        raise ConfigError("prune needs a .pt checkpoint, not an exported file")
    loader = None
    if args.get("data"):
        loader = _loader(state, args["data"], _int(args, "n", 0), _int(args, "batch", 64, 1))
    pre = preprocess_of(state, device)
    acc0 = _accuracy(model, loader, pre, state, device) if loader else None
    before = profile_row("original", model, state, acc0)
    pruned = copy.deepcopy(model)
    info: dict[str, Any] = {"method": method, "amount": amount}
    if method == "magnitude":
        prune_magnitude(pruned, amount, args.get("scope", "global"))
        info["sparsity"] = sparsity(pruned)
    else:
        info["widths"] = dict(state.get("pruned", {}).get("widths", {}))
        info["widths"].update(prune_l1_channels(pruned, amount))
    acc1 = _accuracy(pruned, loader, pre, state, device) if loader else None
    after = profile_row(f"{method} {amount:g}", pruned, state, acc1)
    out = Path(args.get("out") or weights.with_name(f"pruned_{method}.pt"))
    drop = ("optimizer", "scheduler", "rng", "ema_state")
    slim = {k: v for k, v in state.items() if k not in drop}
    slim.update(model=pruned.cpu().state_dict(), ema=None, pruned=info)
    save_checkpoint(out, slim)
    rows = [before, after]
    _write_table(out.parent, f"{out.stem}_table", rows)
    _print_table(rows)
    print(f"prune: wrote {out}; fine-tune it with a training run (accuracy usually recovers)")
    return {"path": str(out), "rows": rows, **info}


# -- quantize ------------------------------------------------------------------------------
QUANTIZE_KEYS = {
    "weights": "classification checkpoint (runs/.../best.pt)",
    "data": "dataset: calibration images from its train split, accuracy on its val split",
    "mode": "static (int8 conv/linear, calibrated) | dynamic (int8 Linear only) (default static)",
    "backend": "x86 | fbgemm | qnnpack | onednn (default x86)",
    "calib": "calibration images (default 256)",
    "n": "validation images for the accuracy (default 0 = all)",
    "batch": "batch size (default 64)",
    "out": "int8 TorchScript file (default: beside weights, model_int8.ts)",
}


def run_quantize(args: dict[str, str]) -> dict[str, Any]:
    """``cvcraft quantize``: int8 model (TorchScript file) and a fp32 vs int8 table of size,
    latency and accuracy. Runs on the CPU (int8 kernels are CPU kernels)."""
    mode = args.get("mode", "static")
    if mode not in ("static", "dynamic"):
        raise ConfigError(f"mode={mode!r}: choose static or dynamic")
    device = torch.device("cpu")
    weights = Path(args["weights"])
    model, state = load_classifier_any(weights, device)
    if "model_name" not in state:
        raise ConfigError("quantize needs a .pt checkpoint, not an exported file")
    pre = preprocess_of(state, device)
    batch = _int(args, "batch", 64, 1)
    loader = _loader(state, args["data"], _int(args, "n", 0), batch)
    if mode == "static":
        cfg = state.get("config") or {}
        splits = load_classification(
            args["data"], val_fraction=float(cfg.get("val_fraction", 0.1)),
            seed=int(cfg.get("seed", 0)), imgsz_hint=int(state.get("imgsz", 32)),
        )  # fmt: skip
        train, n_cal = splits.train, min(_int(args, "calib", 256, 1), len(splits.train))
        pick = np.linspace(0, len(train) - 1, n_cal).round().astype(np.int64)
        cal = build_loader(ClassifyDataset(train.subset(pick), _val_transform(state), seed=0),
                           batch, shuffle=False, workers=0, seed=0)  # fmt: skip
        calib = [pre(b["images"]) for b in cal]
        qmodel = quantize_static(model, calib, args.get("backend", "x86"))
    else:
        qmodel = quantize_dynamic_linear(model)
    c, s = int(state["in_chans"]), int(state.get("imgsz", 224))
    out = Path(args.get("out") or weights.with_name("model_int8.ts"))
    report = export_model(qmodel, torch.zeros(1, c, s, s), out, "torchscript",
                          metadata=checkpoint_metadata(state))  # fmt: skip
    ts = load_torchscript(out)
    rows = [profile_row("fp32", model, state, _accuracy(model, loader, pre, state, device))]
    rows.append({
        "model": f"int8 {mode}", "params": rows[0]["params"], "nonzero_params": "",
        "mmacs": rows[0]["mmacs"], "size_mb": report["bytes"] / 1e6, "zip_mb": "",
        "latency_ms": measure_latency(ts, (c, s, s), batch=1, warmup=3, reps=20),
        "top1": _accuracy(ts, loader, pre, state, device),
    })  # fmt: skip
    _write_table(out.parent, f"{out.stem}_table", rows)
    _print_table(rows)
    print(f"quantize: wrote {out} ({len(quantized_modules(qmodel))} int8 modules)")
    return {"path": str(out), "rows": rows}


# -- export --------------------------------------------------------------------------------
EXPORT_KEYS = {
    "weights": "classification checkpoint (runs/.../best.pt)",
    "format": f"{' | '.join(FORMATS)} (default onnx)",
    "dynamic": "true: symbolic batch axis (ONNX) (default false)",
    "opset": "ONNX opset (default 17)",
    "batch": "batch size of the traced input (default 1)",
    "imgsz": "input size (default: the checkpoint's)",
    "half": "fp16 export (needs a CUDA device; not available on the CPU) (default false)",
    "out": "output file (default: beside weights, model.onnx / model.ts)",
}


def run_export(args: dict[str, str]) -> dict[str, Any]:
    """``cvcraft export``: write the ONNX / TorchScript file and print its parity check
    against eager PyTorch (max |difference| and the tolerance)."""
    fmt = args.get("format", "onnx")
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    if parse_bool(args.get("half", "false"), "half"):
        raise ConfigError("half=true exports fp16, which needs a CUDA device; export fp32 here")
    weights = Path(args["weights"])
    model, state = load_classifier_any(weights, torch.device("cpu"))
    if "model_name" not in state:
        raise ConfigError("export needs a .pt checkpoint")
    c, s = int(state["in_chans"]), _int(args, "imgsz", int(state.get("imgsz", 224)), 1)
    b, dynamic = _int(args, "batch", 1, 1), parse_bool(args.get("dynamic", "false"), "dynamic")
    g = torch.Generator().manual_seed(0)
    example = torch.randn(b, c, s, s, generator=g)
    check = torch.randn(b + 2 if dynamic else b, c, s, s, generator=g)
    suffix = ".onnx" if fmt == "onnx" else ".ts"
    out = Path(args.get("out") or weights.with_name(f"model{suffix}"))
    report = export_model(
        model, example, out, fmt, opset=_int(args, "opset", 17, 1), dynamic=dynamic,
        check=check, metadata=checkpoint_metadata(state),
    )  # fmt: skip
    verdict = "OK" if report["ok"] else "MISMATCH"
    print(f"export: wrote {out} ({report['bytes'] / 1e6:.2f} MB, {fmt})")
    print(f"parity vs PyTorch on a batch of {len(check)}: max |diff| {report['max_abs_diff']:.2e} "
          f"(tolerance {report['atol']:.1e} + {report['rtol']:.0e}*|y|) {verdict}")  # fmt: skip
    return report
