"""Bottom-up pose end to end through the CLI: train -> val -> predict with openpose_small on
multi-person stick figures; val repeats training's numbers, predict writes every person it
groups. And the evaluator scores ground-truth maps (rendered from the val people) at AP50 1
with every person found (oracle: the annotations themselves)."""

import json

import numpy as np
import torch

from cvcraft.cli import main
from cvcraft.data.io import write_image
from cvcraft.data.pose import WholeImages, coco_keypoints_dict, shapes_pose
from cvcraft.data.skeleton import COCO_SKELETON
from cvcraft.metrics.keypoints import COCO_SIGMAS
from cvcraft.tasks.pose.bottom_up import BottomUpEvaluator, bottom_up_targets, collate_people


def test_train_val_predict_openpose(tmp_path):
    run = tmp_path / "run"
    common = ["data=shapes:24", "people=3", "imgsz=64", "workers=0", "progress=false",
              "model=openpose_small", "model_kwargs={width: 8, stages: 2}"]  # fmt: skip
    assert main(["train", "pose", *common, "epochs=1", "batch=8", f"out={run}"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    # plumbing only (one epoch); the learning check is the slow
    # tests/cli/test_pose_openpose_learns.py (map50 >= 0.6; mutants in tests/MUTATIONS.md)
    assert {"map", "map50", "AR", "val_loss"} <= set(trained) and 0 <= trained["map"] <= 1
    val = tmp_path / "val"
    assert main(["val", "pose", *common, f"weights={run / 'best.pt'}", f"out={val}"]) == 0
    metrics = json.loads((val / "metrics.json").read_text())
    for k in ("map", "AR", "val_loss", "people_found"):
        assert abs(metrics[k] - trained[k]) < 1e-9, k

    src = tmp_path / "src"
    write_image(src / "a.png", shapes_pose(1, 64, seed=9, people=3).sample(0).image)
    pred = tmp_path / "pred"
    assert main(["predict", "pose", f"weights={run / 'best.pt'}", f"source={src}",
                 f"out={pred}", "peak_threshold=0.01"]) == 0  # fmt: skip
    res = json.loads((pred / "predictions.json").read_text())
    coco = json.loads((pred / "keypoints.json").read_text())
    assert len(coco) == len(res[0]["keypoints"])  # one COCO result per grouped person
    assert all(len(r["keypoints"]) == 51 for r in coco)


def test_evaluator_on_ground_truth_maps():
    data = shapes_pose(8, 128, seed=3, people=3)
    items = WholeImages(data, 128)
    batch = collate_people([items.sample(i) for i in range(len(items))])
    heat, fields = bottom_up_targets(batch["keypoints"], COCO_SKELETON, (64, 64), 2, 1.0, 1.0)
    ev = BottomUpEvaluator(coco_keypoints_dict(data), COCO_SIGMAS, COCO_SKELETON, 1.0, 1.0, 0.1)
    ev.update(batch, (heat, fields))
    out = ev.compute()
    assert out["people_found"] == sum(len(p) for p in data.people)
    assert out["AP50"] == 1.0 and out["map"] > 0.9
    assert out["val_loss"] < 1e-10  # the targets themselves
    assert torch.equal(batch["counts"], torch.tensor([len(p) for p in data.people]))
    assert np.all(batch["keypoints"][..., 2].numpy()[batch["counts"].numpy()[:, None]
                                                       <= np.arange(3)] == 0)  # fmt: skip
