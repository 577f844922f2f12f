"""Overfit check shared by the detectors' slow tests: train on a few fixed shapes scenes (no
augmentation) and score COCO map50 on the same scenes. A correct detector memorises them; a
bug in target assignment, box coding, loss normalisation, input scaling or decoding keeps it
near an untrained detector's ~0.0 (BENCHMARKS.md, "Overfit checks")."""

from __future__ import annotations

import numpy as np
import torch

from cvcraft.data.detection_dataset import coco_ground_truth, make_shapes_detection
from cvcraft.metrics.coco import COCOEvaluator
from cvcraft.models import create_model


def overfit_map50(
    name: str,
    model_kwargs: dict,
    *,
    scenes: int,
    imgsz: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int = 0,
) -> float:
    """``steps`` AdamW steps (one-cycle LR peaking at ``lr``) on ``scenes`` shapes scenes at
    ``imgsz``, random batches of ``batch``; map50 of the eval-mode model on those scenes."""
    torch.manual_seed(seed)
    data = make_shapes_detection(scenes, imgsz, 0, "train")
    model = create_model(name, num_classes=len(data.classes), **model_kwargs)
    x = torch.tensor(np.stack(data.arrays)).permute(0, 3, 1, 2).float() / 255
    targets = [
        {"boxes": torch.tensor(r.boxes, dtype=torch.float32), "labels": torch.tensor(r.labels)}
        for r in data.images
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randperm(scenes, generator=gen)[:batch].tolist()
        t = [targets[i] for i in idx]
        loss, _ = model.loss(model(x[idx], t), t)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
    model.eval()
    evaluator = COCOEvaluator(coco_ground_truth(data))
    with torch.no_grad():
        for i in range(0, scenes, 16):
            dets = model.postprocess(model(x[i : i + 16]), conf=0.001, iou=0.7, max_det=100)
            evaluator.update([{"image_id": data.images[i + j].image_id, "boxes": d["boxes"],
                               "scores": d["scores"], "labels": d["labels"]}
                              for j, d in enumerate(dets)])  # fmt: skip
    return float(evaluator.compute()["AP50"])
