"""``cvcraft explain``: heat maps of why a classifier chose its class — a CAM method on a
layer, or attention rollout for ViTs — written as overlays over the images."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.data import read_image
from cvcraft.data.io import list_images, write_image
from cvcraft.engine.device import select_device
from cvcraft.engine.export import OnnxModel
from cvcraft.errors import ConfigError
from cvcraft.explain import CAM_METHODS, attention_rollout, class_activation_map
from cvcraft.structures import Sample
from cvcraft.tasks.model_tools import (
    int_arg,
    load_classifier_any,
    out_dir,
    parse_number,
    preprocess_of,
    val_transform,
)
from cvcraft.viz.heatmap import overlay_heatmap, plot_heatmaps

DISPLAY_SIDE = 256  # overlays are drawn at least this large

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
    pre, tf = preprocess_of(meta, device), val_transform(meta)
    alpha = parse_number(args.get("alpha", "0.45"), "alpha")
    batch = int_arg(args, "batch", 16, 1)
    out = out_dir(args, "explain")
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
