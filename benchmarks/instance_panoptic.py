"""COCO segm AP and dense CRF: ours vs the peer, in the same run.

1. ``COCOEvaluator(iou_type="segm")`` vs pycocotools ``COCOeval(iouType="segm")`` on all of
   coco128 (its COCO JSON, every 9th annotation made a crowd) with perturbed predicted masks
   (shifted, eroded, dropped, duplicated, wrong class): wall time of evaluate + accumulate
   (+ the gt/result reading both do), and the largest difference of the 12 numbers.
2. ``ops.crf.dense_crf`` (permutohedral lattice, numpy) vs pydensecrf (C++), 5 iterations,
   on a noisy 4-class 256 x 256 image: time and the largest probability difference.

    OMP_NUM_THREADS=1 python benchmarks/instance_panoptic.py
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cvcraft.metrics.coco import SUMMARY_KEYS, COCOEvaluator  # noqa: E402
from cvcraft.ops.crf import dense_crf  # noqa: E402

GT = ROOT.parent / "shared" / "data" / "coco128" / "annotations" / "instances_train2017.json"


def _rle(pm, m: np.ndarray) -> dict:
    r = pm.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def segm_bench() -> None:
    import pycocotools.mask as pm
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = json.loads(GT.read_text())
    for a in gt["annotations"][::9]:
        a["iscrowd"] = 1
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
    rng = np.random.default_rng(0)
    cats = [c["id"] for c in gt["categories"]]
    res = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        m = coco.annToMask(a).astype(bool)
        for _ in range(1 + int(rng.random() < 0.3)):
            dy, dx = rng.integers(-8, 9, 2)
            s = np.roll(m, (int(dy), int(dx)), axis=(0, 1))
            cat = a["category_id"] if rng.random() > 0.1 else int(rng.choice(cats))
            score = round(float(rng.random()), 2)
            res.append({"image_id": a["image_id"], "category_id": cat,
                        "segmentation": _rle(pm, s), "score": score})  # fmt: skip
    print(f"segm AP: coco128, {len(gt['annotations'])} gt masks, {len(res)} predicted masks")
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = COCO()
        ref_gt.dataset = copy.deepcopy(gt)
        ref_gt.createIndex()
        e = COCOeval(ref_gt, ref_gt.loadRes(copy.deepcopy(res)), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    ev = COCOEvaluator(gt, iou_type="segm")
    ev.update(res)
    out = ev.compute()
    t_ours = time.perf_counter() - t
    diff = np.abs(np.array([out[k] for k in SUMMARY_KEYS]) - e.stats).max()
    print(f"  pycocotools {t_ref:.2f} s   ours {t_ours:.2f} s   ratio {t_ref / t_ours:.1f}x")
    print(f"  AP {out['AP']:.4f}  AP50 {out['AP50']:.4f}  max |ours - pycocotools| = {diff:.1e}")


def crf_bench() -> None:
    import pydensecrf.densecrf as dcrf

    rng = np.random.default_rng(0)
    h = w = 256
    c = 4
    truth = np.zeros((h, w), int)
    truth[:, w // 2 :] = 1
    truth[60:140, 30:110] = 2
    truth[150:230, 150:220] = 3
    colors = rng.integers(0, 256, (c, 3))
    img = np.clip(colors[truth] + rng.normal(0, 15, (h, w, 3)), 0, 255).astype(np.uint8)
    logit = 1.5 * np.eye(c)[truth].transpose(2, 0, 1) + rng.normal(0, 1.2, (c, h, w))
    probs = np.exp(logit) / np.exp(logit).sum(0)
    t = time.perf_counter()
    ours = dense_crf(probs, img, iterations=5)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    d = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(probs, 1e-8, None)).reshape(c, -1).astype(np.float32)
    d.setUnaryEnergy(np.ascontiguousarray(unary))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(img), compat=10)
    ref = np.array(d.inference(5)).reshape(c, h, w)
    t_ref = time.perf_counter() - t
    acc = [(p.argmax(0) == truth).mean() for p in (probs, ours, ref)]
    print(f"dense CRF 256x256, 4 classes, 5 iterations: pydensecrf {t_ref:.2f} s   "
          f"ours {t_ours:.2f} s   ratio {t_ref / t_ours:.2f}x")  # fmt: skip
    print(f"  max |ours - pydensecrf| = {np.abs(ours - ref).max():.1e}; pixel accuracy "
          f"input {acc[0]:.3f} -> ours {acc[1]:.3f}, pydensecrf {acc[2]:.3f}")  # fmt: skip


if __name__ == "__main__":
    segm_bench()
    crf_bench()
