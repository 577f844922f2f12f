"""``cvcraft explain``: heat maps of why a model said what it said, as overlays over the
images — a classifier's class (a CAM method on a layer, or attention rollout for ViTs), a
detector's boxes one by one (per-box Grad-CAM), a segmenter's classes one by one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from cvcraft.data import read_image
from cvcraft.data.io import list_images, write_image
from cvcraft.engine.device import select_device
from cvcraft.engine.export import OnnxModel
from cvcraft.errors import ConfigError
from cvcraft.explain import (
    CAM_METHODS,
    attention_rollout,
    class_activation_map,
    detection_score,
    score_cam_layer,
    segmentation_score,
)
from cvcraft.structures import Sample
from cvcraft.tasks.classify.classic import refuse_classic
from cvcraft.tasks.detect.task import to_inputs
from cvcraft.tasks.model_tools import (
    int_arg,
    load_task_model,
    out_dir,
    parse_number,
    preprocess_of,
    val_transform,
)
from cvcraft.transforms.letterbox import Letterbox
from cvcraft.viz.detection_plots import draw_detections
from cvcraft.viz.heatmap import overlay_heatmap, plot_heatmaps
from cvcraft.viz.segmentation import overlay_mask

DISPLAY_SIDE = 256  # overlays are drawn at least this large

DENSE_METHODS = ("gradcam", "gradcam++", "eigencam")  # detectors / segmenters: score_fn CAMs

EXPLAIN_KEYS = {
    "weights": "checkpoint (runs/.../best.pt) of a classifier, detector or segmenter",
    "source": "an image file or a folder of images",
    "method": f"{' | '.join(CAM_METHODS)} | rollout (ViT) (default gradcam); detectors and "
    f"segmenters: {' | '.join(DENSE_METHODS)}",
    "layer": "layer to explain, as in model.named_modules() (default: the last spatial map)",
    "class": "class name or index to explain (default: classifiers the top prediction, "
    "segmenters the `top` largest predicted classes)",
    "top": "detectors: boxes explained per image; segmenters: classes (default 3)",
    "conf": "detectors: score threshold of the explained boxes (default 0.25)",
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
    """``cvcraft explain``: one overlay PNG per image (classifiers: plus a summary grid;
    detectors: one panel per box; segmenters: one panel per class) and explain.json."""
    method = args.get("method", "gradcam")
    if method not in (*CAM_METHODS, "rollout"):
        raise ConfigError(f"method={method!r}: choose one of {', '.join(CAM_METHODS)}, rollout")
    device = select_device(args.get("device", "cpu"))
    task, model, meta = load_task_model(args["weights"], device)
    refuse_classic(meta, "explain")
    if task in ("detect", "segment"):
        if method not in DENSE_METHODS:
            raise ConfigError(
                f"method={method} explains classifiers; for a {task} checkpoint use "
                f"{', '.join(DENSE_METHODS)}"
            )
        explain = _explain_boxes if task == "detect" else _explain_classes
        return explain(model, meta, method, args, device)
    if isinstance(model, OnnxModel | torch.jit.ScriptModule):
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
            big, big_heat = _enlarge(img)[1], _enlarge(heat)[1]
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


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` in white on a black strip at the top left."""
    out = np.ascontiguousarray(image.copy())
    font = max(0.35, image.shape[0] / 700)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
    cv2.rectangle(out, (0, 0), (tw + 4, th + base + 4), (0, 0, 0), -1)
    cv2.putText(out, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1)
    return out


def _enlarge(a: np.ndarray) -> tuple[int, np.ndarray]:
    """(k, ``a`` repeated k times along H and W) with k the integer factor that brings the
    longer side to at least DISPLAY_SIDE: small inputs stay crisp instead of blurred."""
    k = max(1, math.ceil(DISPLAY_SIDE / max(a.shape[:2])))
    return k, np.repeat(np.repeat(a, k, 0), k, 1)


def _evidence(res: Any) -> str:
    """The layer explained, or a warning when no location raised the score (all-zero map)."""
    if float(res.raw.clamp_min(0).max()) == 0:
        return "no positive evidence"
    return res.layer


def _letterboxed(files: list[Path], imgsz: int) -> Iterator[tuple[Path, np.ndarray]]:
    for f in files:
        yield f, Letterbox(imgsz)(Sample(read_image(f))).image


def _explain_boxes(
    model: nn.Module, state: dict[str, Any], method: str, args: dict[str, str], device
) -> list[dict[str, Any]]:
    """Per-box CAMs of a detector: each of the ``top`` detections above ``conf`` explained
    by its own score (``explain.detection_score``); one panel per box."""
    if not hasattr(model, "decode"):
        raise ConfigError(
            f"per-box explanations need a detector with a differentiable decode() (the YOLOs); "
            f"{state.get('model_name')} has none"
        )
    classes, out = list(state["classes"]), out_dir(args, "explain")
    top, conf = int_arg(args, "top", 3, 1), parse_number(args.get("conf", "0.25"), "conf")
    alpha = parse_number(args.get("alpha", "0.45"), "alpha")
    results = []
    for f, img in _letterboxed(list_images(args["source"]), int(state.get("imgsz", 640))):
        x = to_inputs(
            torch.from_numpy(img).permute(2, 0, 1)[None], device, int(state.get("in_chans", 3))
        )
        with torch.no_grad():
            det = model.postprocess(model(x), conf=conf, max_det=top)[0]
        k_up, big = _enlarge(img)
        panels = [_caption(big, f"{f.name}: {len(det['boxes'])} boxes >= {conf:g}")]
        for k, (box, score, label) in enumerate(zip(det["boxes"], det["scores"], det["labels"])):
            fn = detection_score(model.decode, box[None], label[None])
            layer = args.get("layer") or score_cam_layer(model, x, fn)
            res = class_activation_map(model, x, layer, method, score_fn=fn)
            shown = overlay_heatmap(big, _enlarge(res.maps[0].cpu().numpy())[1], alpha)
            b = box[None].cpu().numpy() * k_up
            shown = draw_detections(shown, b, score[None].cpu().numpy(), [int(label)], classes)
            panels.append(_caption(shown, f"box {k + 1}: {_evidence(res)}"))
            results.append({"path": str(f), "box": [float(v) for v in box], "class":
                            classes[int(label)], "score": float(score), "panel": k + 1,
                            "layer": res.layer})  # fmt: skip
        path = out / f"{f.stem}_{method}.png"
        write_image(path, np.concatenate(panels, 1))
        for r in results:
            r.setdefault("overlay", str(path))
    (out / "explain.json").write_text(json.dumps(results, indent=1))
    print(f"explain: {len(results)} boxes ({method}) in {out}")
    return results


def _explain_classes(
    model: nn.Module, state: dict[str, Any], method: str, args: dict[str, str], device
) -> list[dict[str, Any]]:
    """Per-class CAMs of a segmenter (Seg-Grad-CAM): the class's logits summed over the
    pixels predicted as that class; one panel per class, after the predicted mask."""
    classes, out = list(state["classes"]), out_dir(args, "explain")
    pre = preprocess_of(state, device)
    fixed = _class_index(args.get("class"), classes)
    top, alpha = int_arg(args, "top", 3, 1), parse_number(args.get("alpha", "0.45"), "alpha")
    results = []
    for f, img in _letterboxed(list_images(args["source"]), int(state.get("imgsz", 512))):
        x = pre(torch.from_numpy(img).permute(2, 0, 1)[None].to(device))
        with torch.no_grad():
            pred = model(x).argmax(1)[0]
        area = torch.bincount(pred.flatten(), minlength=len(classes))
        wanted = [fixed] if fixed is not None else area.argsort(descending=True)[:top].tolist()
        wanted = [c for c in wanted if fixed is not None or area[c] > 0]
        mask = pred.to(torch.uint8).cpu().numpy()
        _, big = _enlarge(img)
        shown_mask = overlay_mask(big, _enlarge(mask)[1], background=None)
        panels = [_caption(shown_mask, f"{f.name}: prediction")]
        for c in wanted:
            res = class_activation_map(
                model, x, args.get("layer") or None, method, score_fn=segmentation_score(c)
            )
            shown = overlay_heatmap(big, _enlarge(res.maps[0].cpu().numpy())[1], alpha)
            share = float(area[c]) / pred.numel()
            panels.append(_caption(shown, f"{classes[c]} ({share:.0%} px): {_evidence(res)}"))
            results.append({"path": str(f), "class": classes[c], "pixels": share,
                            "panel": len(panels) - 1, "layer": res.layer})  # fmt: skip
        path = out / f"{f.stem}_{method}.png"
        write_image(path, np.concatenate(panels, 1))
        for r in results:
            r.setdefault("overlay", str(path))
    (out / "explain.json").write_text(json.dumps(results, indent=1))
    print(f"explain: {len(results)} class maps ({method}) in {out}")
    return results
