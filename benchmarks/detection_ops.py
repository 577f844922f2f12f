"""COCO bbox evaluation wall time: cvcraft's vectorized COCOEvaluator vs pycocotools and
faster-coco-eval, on the same predictions in the same run.

Two scales: the 128 coco128 train images, and a synthetic 5,000-image scale-up (the 128
images' annotations replicated under new image/annotation ids). Predictions: every gt
jittered (scores random, 20% dropped, 30% duplicated, 10% with a wrong category) plus random
boxes, ~20 detections per image. Each tool parses the same in-memory gt dict and result list;
the time covers loading results + evaluate + accumulate + summarize. The 12 numbers are
checked to agree. At the end ``benchmarks/box_ops.py`` (if present) runs too.

    python benchmarks/detection_ops.py [--images 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.metrics.coco import SUMMARY_KEYS, COCOEvaluator

ROOT = Path(__file__).resolve().parents[1]
GT_JSON = ROOT.parent / "shared" / "data" / "coco128" / "annotations" / "instances_train2017.json"


def scale_up(gt: dict[str, Any], num_images: int) -> dict[str, Any]:
    """Replicate the images (and their annotations) under new ids up to ``num_images``."""
    images, anns = [], []
    base = gt["images"]
    by_img: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    next_ann = 1
    for i in range(num_images):
        src = base[i % len(base)]
        images.append({**src, "id": i + 1})
        for a in by_img.get(src["id"], []):
            anns.append(
                {k: v for k, v in a.items() if k != "segmentation"}
                | {"image_id": i + 1, "id": next_ann}
            )
            next_ann += 1
    return {"images": images, "annotations": anns, "categories": gt["categories"]}


def make_predictions(gt: dict[str, Any], seed: int = 0, extra_per_image: int = 12) -> list[dict]:
    """Jittered gts (some dropped, duplicated, mislabelled) plus random boxes, per image."""
    rng = np.random.default_rng(seed)
    anns = gt["annotations"]
    cat_ids = np.array([c["id"] for c in gt["categories"]])
    box = np.array([a["bbox"] for a in anns], dtype=np.float64)
    keep = rng.random(len(anns)) > 0.2
    reps = np.where(keep, 1 + (rng.random(len(anns)) < 0.3), 0)
    idx = np.repeat(np.arange(len(anns)), reps)
    b = box[idx]
    b = b + rng.normal(0, 0.1, b.shape) * b[:, [2, 3, 2, 3]]
    b[:, 2:] = np.maximum(b[:, 2:], 0.5)
    cats = np.array([anns[i]["category_id"] for i in idx])
    wrong = rng.random(len(idx)) < 0.1
    cats[wrong] = rng.choice(cat_ids, wrong.sum())
    img = np.array([anns[i]["image_id"] for i in idx])
    img_ids = np.array([im["id"] for im in gt["images"]])
    n_rand = extra_per_image * len(img_ids)
    rb = np.concatenate([rng.uniform(0, 500, (n_rand, 2)), rng.uniform(4, 300, (n_rand, 2))], 1)
    img = np.concatenate([img, np.repeat(img_ids, extra_per_image)])
    cats = np.concatenate([cats, rng.choice(cat_ids, n_rand)])
    b = np.concatenate([b, rb])
    score = rng.random(len(b))
    return [
        {
            "image_id": int(i),
            "category_id": int(c),
            "bbox": [float(v) for v in bb],
            "score": float(s),
        }
        for i, c, bb, s in zip(img, cats, b, score)
    ]


def run_cvcraft(gt: dict, results: list[dict]) -> np.ndarray:
    ev = COCOEvaluator(gt)
    ev.update(results)
    out = ev.compute()
    return np.array([out[k] for k in SUMMARY_KEYS])


def _run_cocoeval(coco_mod: Any, eval_cls: Any, gt: dict, results: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = coco_mod()
        coco.dataset = gt
        coco.createIndex()
        dets = coco.loadRes(results)
        e = eval_cls(coco, dets, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats[:12], dtype=np.float64)


def run_pycocotools(gt: dict, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return _run_cocoeval(COCO, COCOeval, gt, results)


def run_faster_coco_eval(gt: dict, results: list[dict]) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    return _run_cocoeval(COCO, COCOeval_faster, gt, results)


def _time(fn: Any, gt: dict, results: list[dict], repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        g, r = copy.deepcopy(gt), copy.deepcopy(results)  # the peers mutate their inputs
        t0 = time.perf_counter()
        out = fn(g, r)
        best = min(best, time.perf_counter() - t0)
    return best, out  # type: ignore[return-value]


def bench(gt: dict, results: list[dict], label: str, repeat: int) -> None:
    print(
        f"\n{label}: {len(gt['images'])} images, {len(gt['annotations'])} gts, "
        f"{len(results)} detections"
    )
    rows = [("cvcraft COCOEvaluator", run_cvcraft), ("pycocotools COCOeval", run_pycocotools)]
    try:
        import faster_coco_eval  # noqa: F401

        rows.append(("faster-coco-eval", run_faster_coco_eval))
    except ImportError:
        print("  (faster-coco-eval not installed; skipped)")
    times, stats = {}, {}
    for name, fn in rows:
        times[name], stats[name] = _time(fn, gt, results, repeat)
    ref = times["pycocotools COCOeval"]
    print(f"  {'tool':<24}{'time (s)':>10}{'vs pycocotools':>16}{'max |diff| of 12':>18}")
    for name in times:
        diff = np.abs(stats[name] - stats["pycocotools COCOeval"]).max()
        print(f"  {name:<24}{times[name]:>10.3f}{ref / times[name]:>15.1f}x{diff:>18.2e}")
    ap, ap50, ar100 = stats["cvcraft COCOEvaluator"][[0, 1, 8]]
    print(f"  cvcraft: AP={ap:.4f} AP50={ap50:.4f} AR100={ar100:.4f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=5000, help="size of the synthetic scale-up")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (the 128-image case)")
    args = ap.parse_args(argv)
    if not GT_JSON.is_file():
        raise SystemExit(f"{GT_JSON} is absent; this benchmark needs the coco128 annotations")
    with open(GT_JSON) as f:
        gt = json.load(f)
    bench(gt, make_predictions(gt), "coco128 train", args.repeat)
    big = scale_up(gt, args.images)
    bench(big, make_predictions(big, seed=1), "synthetic scale-up", 1)

    box_ops = ROOT / "benchmarks" / "box_ops.py"
    if box_ops.is_file():  # another benchmark of the detection ops; one command prints all
        spec = importlib.util.spec_from_file_location("box_ops_bench", box_ops)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        print()
        mod.main([])


if __name__ == "__main__":
    main()
