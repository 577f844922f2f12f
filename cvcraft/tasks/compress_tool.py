"""``cvcraft prune`` and ``cvcraft quantize``: a smaller or int8 model from a checkpoint and
a table of parameters, MACs, size, CPU latency (and accuracy) before and after.

``finetune_epochs=N`` fine-tunes the pruned checkpoint with a classify training run (the
Trainer, the task's data pipeline and recipe; the task rebuilds the pruned widths from the
checkpoint), keeping magnitude pruning's zeros at zero (``KeepPrunedZeros``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.data import ClassifyDataset, build_loader, load_classification, set_epoch
from cvcraft.engine.checkpoint import save_checkpoint
from cvcraft.engine.device import select_device
from cvcraft.engine.export import export_model, load_torchscript
from cvcraft.engine.quantize import (
    convert_qat,
    prepare_qat,
    quantize_dynamic_linear,
    quantize_static,
    quantized_modules,
)
from cvcraft.errors import ConfigError
from cvcraft.models.profile import count_macs, measure_latency
from cvcraft.nn.prune import prune_l1_channels, prune_magnitude, sparsity
from cvcraft.tasks.classify.classic import refuse_classic
from cvcraft.tasks.model_tools import (
    accuracy,
    checkpoint_metadata,
    int_arg,
    load_classifier_any,
    parse_number,
    preprocess_of,
    print_table,
    state_dict_bytes,
    val_loader,
    val_transform,
    write_table,
)

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
    "finetune_epochs": "fine-tune the pruned model for N epochs with `cvcraft train classify` "
    "on data= (default 0 = no fine-tuning); run folder <out>_finetune",
    "finetune_lr": "fine-tuning learning rate (default: the run's lr / 10)",
    "workers": "fine-tuning data-loading workers (default 0)",
}


class KeepPrunedZeros:
    """Trainer callback: the weights magnitude pruning set to zero get no gradient, so SGD
    (momentum, weight decay) and Adam(W) leave them exactly zero while the rest fine-tunes."""

    def __init__(self) -> None:
        self.masks: dict[str, torch.Tensor] = {}

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if not self.masks:  # the pruned weights are loaded by now (the Trainer's setup)
            self.masks = {n: p != 0 for n, p in trainer.module.named_parameters() if p.dim() > 1}

    def before_optimizer_step(self, trainer: Any, name: str) -> None:
        if name != "model":
            return
        for n, p in trainer.module.named_parameters():
            if n in self.masks and p.grad is not None:
                p.grad.mul_(self.masks[n])


def finetune_pruned(
    pruned: Path, state: dict[str, Any], args: dict[str, str], epochs: int, method: str
) -> Path:
    """A classify training run of ``epochs`` from the pruned checkpoint (the original run's
    recipe, lr / 10, no warm-up) in ``<pruned>_finetune``; -> its best.pt."""
    from dataclasses import fields

    from cvcraft.engine.trainer import Trainer
    from cvcraft.tasks.registry import get_task, task_config

    spec = get_task("classify")
    saved = dict(state.get("config") or {})
    data = args.get("data") or saved.get("data")
    if not data:
        raise ConfigError("finetune_epochs needs data= (the checkpoint does not name its data)")
    own = ("out", "name", "resume", "exist_ok", "weights", "teacher", "epochs", "devices",
           "folds", "fold", "init", "freeze", "warmup_epochs", "workers", "progress")  # fmt: skip
    known = {f.name for f in fields(spec.config)}
    values = {k: v for k, v in saved.items() if k in known and k not in own}
    lr = parse_number(args["finetune_lr"], "finetune_lr") if "finetune_lr" in args else None
    out = pruned.with_name(f"{pruned.stem}_finetune")
    values.update(
        model=state["model_name"], data=data, imgsz=int(state.get("imgsz", 224)),
        in_chans=int(state["in_chans"]), model_kwargs=state.get("model_kwargs") or {},
        epochs=epochs, weights=str(pruned), warmup_epochs=0.0, out=str(out), exist_ok=True,
        workers=int_arg(args, "workers", 0), progress=False,
        lr=lr if lr is not None else float(saved.get("lr", 0.1)) / 10,
    )  # fmt: skip
    if "batch" in args:
        values["batch"] = int_arg(args, "batch", 64, 1)
    cfg = task_config("classify", values)
    callbacks = [KeepPrunedZeros()] if method == "magnitude" else []
    Trainer(spec.load_class()(cfg), cfg, callbacks=callbacks).fit()
    return out / "best.pt"


def profile_row(name: str, model: nn.Module, meta: dict, acc: float | None) -> dict[str, Any]:
    """Params (and non-zero), MACs, state_dict size (raw and zlib) and batch-1 CPU latency."""
    c, s = int(meta["in_chans"]), int(meta.get("imgsz", 224))
    cpu = copy.deepcopy(model).cpu().eval()
    size, packed = state_dict_bytes(cpu)
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
    refuse_classic(state, "prune")
    if not isinstance(state, dict) or "model_name" not in state:
        raise ConfigError("prune needs a .pt checkpoint, not an exported file")
    loader = None
    if args.get("data"):
        n, batch = int_arg(args, "n", 0), int_arg(args, "batch", 64, 1)
        loader = val_loader(state, args["data"], n, batch)
    pre = preprocess_of(state, device)
    acc0 = accuracy(model, loader, pre, state, device) if loader else None
    before = profile_row("original", model, state, acc0)
    pruned = copy.deepcopy(model)
    info: dict[str, Any] = {"method": method, "amount": amount}
    if method == "magnitude":
        prune_magnitude(pruned, amount, args.get("scope", "global"))
        info["sparsity"] = sparsity(pruned)
    else:
        info["widths"] = dict(state.get("pruned", {}).get("widths", {}))
        info["widths"].update(prune_l1_channels(pruned, amount))
    acc1 = accuracy(pruned, loader, pre, state, device) if loader else None
    after = profile_row(f"{method} {amount:g}", pruned, state, acc1)
    out = Path(args.get("out") or weights.with_name(f"pruned_{method}.pt"))
    drop = ("optimizer", "scheduler", "rng", "ema_state")
    slim = {k: v for k, v in state.items() if k not in drop}
    slim.update(model=pruned.cpu().state_dict(), ema=None, pruned=info)
    save_checkpoint(out, slim)
    rows = [before, after]
    result: dict[str, Any] = {"path": str(out), "rows": rows, **info}
    epochs = int_arg(args, "finetune_epochs", 0)
    if epochs:
        best = finetune_pruned(out, state, args, epochs, method)
        tuned, tuned_state = load_classifier_any(best, device)
        acc2 = None
        if loader is not None:
            acc2 = accuracy(tuned, loader, preprocess_of(tuned_state, device), tuned_state, device)
        rows.append(profile_row(f"{method} {amount:g} + {epochs} ep", tuned, tuned_state, acc2))
        result["finetuned"] = str(best)
        if method == "magnitude":
            result["finetuned_sparsity"] = sparsity(tuned)
    write_table(out.parent, f"{out.stem}_table", rows)
    print_table(rows)
    if not epochs:
        print(f"prune: wrote {out}; fine-tune it with finetune_epochs=N (accuracy recovers)")
    else:
        print(f"prune: wrote {out} and the fine-tuned run {Path(result['finetuned']).parent}")
    return result


# -- quantize ------------------------------------------------------------------------------
QUANTIZE_KEYS = {
    "weights": "classification checkpoint (runs/.../best.pt)",
    "data": "dataset: calibration images from its train split, accuracy on its val split",
    "mode": "static (int8 conv/linear, calibrated) | dynamic (int8 Linear only) | qat "
    "(fine-tuned through fake-quant, then int8) (default static)",
    "qat_epochs": "qat: fine-tuning epochs over the train split (default 1)",
    "qat_lr": "qat: SGD learning rate of the fine-tuning (default 1e-4)",
    "backend": "x86 | fbgemm | qnnpack | onednn (default x86)",
    "calib": "calibration images (default 256)",
    "n": "validation images for the accuracy (default 0 = all)",
    "batch": "batch size (default 64)",
    "out": "int8 TorchScript file (default: beside weights, model_int8.ts)",
}


def quantization_aware_finetune(
    model: nn.Module, train: Any, state: dict, pre: nn.Module, args: dict[str, str], batch: int
) -> nn.Module:
    """QAT: the model with fake-quant modules (int8 rounding in the forward, straight-through
    gradients) fine-tuned with SGD on the train split (no augmentation, seeded order), then
    converted to int8. A short plain loop: the model is an fx graph the task cannot build."""
    epochs = int_arg(args, "qat_epochs", 1, 1)
    try:
        lr = float(args.get("qat_lr", 1e-4))
    except ValueError:
        raise ConfigError(f"qat_lr={args.get('qat_lr')!r} must be a number") from None
    if lr <= 0:
        raise ConfigError(f"qat_lr={lr} must be > 0")
    c, s = int(state["in_chans"]), int(state.get("imgsz", 224))
    qat = prepare_qat(
        copy.deepcopy(model).eval(), torch.zeros(2, c, s, s), args.get("backend", "x86")
    )
    opt = torch.optim.SGD(qat.parameters(), lr=lr, momentum=0.9)
    loader = build_loader(ClassifyDataset(train, val_transform(state), seed=0), batch,
                          shuffle=True, workers=0, seed=0)  # fmt: skip
    qat.train()
    for epoch in range(epochs):
        set_epoch(loader, epoch)  # a new seeded order each epoch
        for b in loader:
            loss = nn.functional.cross_entropy(qat(pre(b["images"])), b["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return convert_qat(qat.eval())


def run_quantize(args: dict[str, str]) -> dict[str, Any]:
    """``cvcraft quantize``: int8 model (TorchScript file) and a fp32 vs int8 table of size,
    latency and accuracy. Runs on the CPU (int8 kernels are CPU kernels)."""
    mode = args.get("mode", "static")
    if mode not in ("static", "dynamic", "qat"):
        raise ConfigError(f"mode={mode!r}: choose static, dynamic or qat")
    device = torch.device("cpu")
    weights = Path(args["weights"])
    model, state = load_classifier_any(weights, device)
    refuse_classic(state, "quantize")
    if "model_name" not in state:
        raise ConfigError("quantize needs a .pt checkpoint, not an exported file")
    pre = preprocess_of(state, device)
    batch = int_arg(args, "batch", 64, 1)
    loader = val_loader(state, args["data"], int_arg(args, "n", 0), batch)
    if mode in ("static", "qat"):
        cfg = state.get("config") or {}
        splits = load_classification(
            args["data"], val_fraction=float(cfg.get("val_fraction", 0.1)),
            seed=int(cfg.get("seed", 0)), imgsz_hint=int(state.get("imgsz", 32)),
        )  # fmt: skip
        train, n_cal = splits.train, min(int_arg(args, "calib", 256, 1), len(splits.train))
        pick = np.linspace(0, len(train) - 1, n_cal).round().astype(np.int64)
        cal = build_loader(ClassifyDataset(train.subset(pick), val_transform(state), seed=0),
                           batch, shuffle=False, workers=0, seed=0)  # fmt: skip
        calib = [pre(b["images"]) for b in cal]
        if mode == "static":
            qmodel = quantize_static(model, calib, args.get("backend", "x86"))
        else:
            qmodel = quantization_aware_finetune(model, train, state, pre, args, batch)
    else:
        qmodel = quantize_dynamic_linear(model)
    c, s = int(state["in_chans"]), int(state.get("imgsz", 224))
    out = Path(args.get("out") or weights.with_name("model_int8.ts"))
    report = export_model(qmodel, torch.zeros(1, c, s, s), out, "torchscript",
                          metadata=checkpoint_metadata(state))  # fmt: skip
    ts = load_torchscript(out)
    rows = [profile_row("fp32", model, state, accuracy(model, loader, pre, state, device))]
    rows.append({
        "model": f"int8 {mode}", "params": rows[0]["params"], "nonzero_params": "",
        "mmacs": rows[0]["mmacs"], "size_mb": report["bytes"] / 1e6, "zip_mb": "",
        "latency_ms": measure_latency(ts, (c, s, s), batch=1, warmup=3, reps=20),
        "top1": accuracy(ts, loader, pre, state, device),
    })  # fmt: skip
    write_table(out.parent, f"{out.stem}_table", rows)
    print_table(rows)
    print(f"quantize: wrote {out} ({len(quantized_modules(qmodel))} int8 modules)")
    return {"path": str(out), "rows": rows}
