"""The pose task's evaluator: heatmaps rendered at the true keypoints score AP 1, and the
merge of split states equals one pass (the DDP contract)."""

import numpy as np
import pytest
import torch

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.pose import PersonCrops, coco_keypoints_dict, shapes_pose
from cvcraft.metrics.keypoints import COCO_SIGMAS
from cvcraft.ops.heatmaps import gaussian_heatmaps
from cvcraft.tasks.pose.task import PoseEvaluator, collate_pose


def _batches():
    data = shapes_pose(12, 64, seed=2)
    crops = AugmentedDataset(PersonCrops(data, 64), None, 0)
    items = [crops[(0, i)] for i in range(len(crops))]
    return data, [collate_pose(items[:5]), collate_pose(items[5:])]


def test_true_heatmaps_score_ap_one_and_merge_equals_one_pass():
    data, batches = _batches()
    gt = coco_keypoints_dict(data)
    rng = np.random.default_rng(0)
    whole = PoseEvaluator(gt, COCO_SIGMAS, 2.0, (5, 12))
    parts = [PoseEvaluator(gt, COCO_SIGMAS, 2.0, (5, 12)) for _ in batches]
    for b, part in zip(batches, parts):
        hm, _ = gaussian_heatmaps(b["keypoints"], (16, 16), 4, 2.0)
        hm = hm * torch.from_numpy(rng.uniform(0.5, 1, hm.shape[:2]))[..., None, None].float()
        whole.update(b, hm)
        part.update(b, hm)
    want = whole.compute()
    assert want["map"] == pytest.approx(1.0) and want["val_people"] == 12
    assert want["val_loss"] > 0  # the peaks were scaled, so not the exact targets
    merged = PoseEvaluator(gt, COCO_SIGMAS, 2.0, (5, 12))
    for p in parts:
        merged.merge(p.state_dict())
    got = merged.compute()
    assert want["pck"] == 1.0  # decoded within a cell: far inside 0.2 torso diameters
    for k in ("map", "map50", "AR", "APm", "val_loss", "pck"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
