"""Detection ensembles: fuse several detectors' (or TTA runs') COCO results files into one.

``cvcraft ensemble detect preds=a.json,b.json method=wbf weights=2,1`` reads each COCO
results JSON (a list of ``image_id, category_id, bbox [x, y, w, h], score``, what
``cvcraft predict detect gt=...`` writes), fuses the boxes of each image with
``ops.box_fusion`` (wbf | nmw | soft_nms | nms) and writes the fused results JSON. With
``gt=instances.json`` every member and the fusion are scored (COCO AP) and the gain over
the best member is reported in ``ensemble.json`` beside the output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.box_fusion import CONF_TYPES, FUSION_METHODS, fuse_boxes

DETECT_ENSEMBLE_KEYS: dict[str, str] = {
    "preds": "comma-separated COCO results JSON files (one per model or TTA run)",
    "method": "wbf (default) | nmw | soft_nms | nms",
    "weights": "one weight per preds file, comma-separated (default: all 1)",
    "iou": "IoU above which boxes fuse (default 0.55; 0.5 for soft_nms/nms)",
    "skip": "drop input boxes scoring below this (default 0)",
    "conf_type": f"wbf score: {' | '.join(CONF_TYPES)} (default avg)",
    "sigma": "soft_nms Gaussian width (default 0.5)",
    "soft": "soft_nms decay: gaussian (default) | linear",
    "thresh": "soft_nms: keep boxes whose decayed score is above this (default 0.001)",
    "max_det": "keep at most this many fused boxes per image (default 300)",
    "gt": "a COCO instances JSON: score every member and the fusion (AP, gain)",
    "out": "the fused results JSON to write (default runs/detect/ensemble/predictions.json)",
}


def read_results(path: str) -> dict[str, np.ndarray]:
    """A COCO results JSON as columns: image_id (N,), category_id (N,), boxes (N, 4) xyxy,
    scores (N,)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ensemble detect: preds file {path}: no such file")
    try:
        rows = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a COCO results list, got a {type(rows).__name__}")
    try:
        ids = np.array([r["image_id"] for r in rows], dtype=np.int64)
        cats = np.array([r["category_id"] for r in rows], dtype=np.int64)
        xywh = np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
        scores = np.array([r["score"] for r in rows], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{path}: each entry needs image_id, category_id, bbox [x, y, w, h], score ({e})"
        ) from None
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    return {"image_id": ids, "category_id": cats, "boxes": boxes, "scores": scores}


def fuse_results(
    members: list[dict[str, np.ndarray]],
    method: str = "wbf",
    weights: list[float] | None = None,
    iou: float = 0.55,
    skip: float = 0.0,
    max_det: int = 300,
    **kw: Any,
) -> list[dict[str, Any]]:
    """Fuse members' results image by image; returns a COCO results list (best first per
    image, images in ascending id)."""
    # Each member's rows grouped by image once (argsort), then sliced per image.
    groups = []
    for m in members:
        order = np.argsort(m["image_id"], kind="stable")
        ids = m["image_id"][order]
        uniq, start = np.unique(ids, return_index=True)
        end = np.append(start[1:], len(ids))
        groups.append({int(i): order[s:e] for i, s, e in zip(uniq, start, end)})
    out: list[dict[str, Any]] = []
    empty = np.zeros(0, dtype=np.int64)
    for img in sorted(set().union(*groups)):
        rows = [g.get(img, empty) for g in groups]
        b, s, lab = fuse_boxes(
            method,
            [m["boxes"][r] for m, r in zip(members, rows)],
            [m["scores"][r] for m, r in zip(members, rows)],
            [m["category_id"][r] for m, r in zip(members, rows)],
            weights,
            iou,
            skip,
            **kw,
        )
        b, s, lab = b[:max_det], s[:max_det], lab[:max_det]
        wh = b[:, 2:] - b[:, :2]
        out.extend(
            {"image_id": img, "category_id": int(c), "score": round(float(sc), 5),
             "bbox": [round(float(v), 3) for v in (x[0], x[1], w[0], w[1])]}
            for x, w, c, sc in zip(b, wh, lab, s)
        )  # fmt: skip
    return out


def _numbers(raw: Any, key: str) -> list[float]:
    try:
        return [float(v) for v in str(raw).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"ensemble detect: {key}={raw!r} must be comma-separated numbers"
        ) from None


def run_detect_ensemble(args: dict[str, Any]) -> dict[str, Any]:
    """``cvcraft ensemble detect preds=a.json,b.json [method=wbf] [weights=2,1] [gt=...]``."""
    paths = [p.strip() for p in str(args.get("preds") or "").split(",") if p.strip()]
    if len(paths) < 1:
        raise ConfigError("ensemble detect needs preds=a.json,b.json (COCO results files)")
    method = str(args.get("method") or "wbf")
    if method not in FUSION_METHODS:
        raise ConfigError(f"ensemble detect: method={method!r}; use one of {FUSION_METHODS}")
    weights = _numbers(args["weights"], "weights") if args.get("weights") else None
    if weights is not None and len(weights) != len(paths):
        raise ConfigError(
            f"ensemble detect: weights has {len(weights)} numbers for {len(paths)} preds files"
        )
    iou = float(args.get("iou") or (0.55 if method in ("wbf", "nmw") else 0.5))
    if not 0.0 <= iou <= 1.0:
        raise ConfigError(f"ensemble detect: iou={iou} must be in [0, 1]")
    max_det = int(args.get("max_det") or 300)
    kw: dict[str, Any] = {}
    if method == "wbf":
        kw["conf_type"] = str(args.get("conf_type") or "avg")
    if method == "soft_nms":
        kw.update(sigma=float(args.get("sigma") or 0.5), thresh=float(args.get("thresh") or 0.001),
                  decay=str(args.get("soft") or "gaussian"))  # fmt: skip
    for k in ("conf_type", "sigma", "thresh", "soft"):
        if args.get(k) and k not in kw and not (k == "soft" and "decay" in kw):
            raise ConfigError(f"ensemble detect: {k}= does not apply to method={method}")
    members = [read_results(p) for p in paths]
    fused = fuse_results(members, method, weights, iou, float(args.get("skip") or 0.0), max_det,
                         **kw)  # fmt: skip
    out = Path(str(args.get("out") or "runs/detect/ensemble/predictions.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fused))
    result: dict[str, Any] = {"task": "detect", "method": method, "preds": paths,
                              "weights": weights, "iou": iou, "out": str(out),
                              "detections": len(fused)}  # fmt: skip
    if args.get("gt"):
        from cvcraft.metrics.coco import evaluate_coco_files

        ap = [float(evaluate_coco_files(args["gt"], p)["AP"]) for p in paths]
        result["members"] = [{"preds": p, "AP": a} for p, a in zip(paths, ap)]
        result["ensemble"] = {"AP": float(evaluate_coco_files(args["gt"], out)["AP"])}
        result["gain"] = result["ensemble"]["AP"] - max(ap)
        (out.parent / "ensemble.json").write_text(json.dumps(result, indent=2))
        print(f"AP: ensemble {result['ensemble']['AP']:.4f}, best member {max(ap):.4f}, "
              f"gain {result['gain']:+.4f}")  # fmt: skip
    print(f"{len(fused)} fused detections ({method}) written to {out}")
    return result
