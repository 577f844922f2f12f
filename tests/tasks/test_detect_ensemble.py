"""`cvcraft ensemble detect`: the fused results JSON equals ensemble-boxes image by image,
and the COCO AP it reports is the evaluator's on the written file."""

import json

import numpy as np
import pytest

from cvcraft.cli import _module_tool
from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.coco import evaluate_coco_files
from cvcraft.tasks.ensemble import run_ensemble

eb = pytest.importorskip("ensemble_boxes", reason="the oracle package ensemble-boxes (dev extra)")

W, H = 640, 480


def make_files(tmp_path, n_img=6, seed=0):
    """A COCO gt file and two members: the gt boxes jittered (independently per member)
    plus false positives."""
    rng = np.random.default_rng(seed)
    images, anns, members = [], [], [[], []]
    for i in range(1, n_img + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": W, "height": H})
        for _ in range(rng.integers(1, 5)):
            xy = rng.uniform([0, 0], [W - 120, H - 120])
            wh = rng.uniform(30, 110, 2)
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat,
                         "bbox": [*xy, *wh], "area": float(wh.prod()), "iscrowd": 0})  # fmt: skip
            for m in members:
                j = rng.normal(0, 6, 4)
                box = [xy[0] + j[0], xy[1] + j[1], wh[0] + j[2], wh[1] + j[3]]
                s = float(rng.uniform(0.3, 1))
                m.append({"image_id": i, "category_id": cat, "score": s, "bbox": box})
        for m in members:  # a false positive each
            xy = rng.uniform([0, 0], [W - 60, H - 60])
            m.append({"image_id": i, "category_id": 1, "score": float(rng.uniform(0, 0.5)),
                      "bbox": [*xy, 40.0, 40.0]})  # fmt: skip
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    paths = []
    for k, m in enumerate(members):
        p = tmp_path / f"m{k}.json"
        p.write_text(json.dumps(m))
        paths.append(p)
    return gt, paths, members


def per_image(rows, img):
    r = [x for x in rows if x["image_id"] == img]
    b = np.array([x["bbox"] for x in r], float).reshape(-1, 4)
    return (np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1), np.array([x["score"] for x in r]),
            np.array([x["category_id"] for x in r]))  # fmt: skip


def test_ensemble_detect_equals_ensemble_boxes(tmp_path):
    gt, paths, members = make_files(tmp_path)
    out = tmp_path / "fused.json"
    # the wiring proposed: need=() (detect has no checkpoints; run_ensemble checks the rest)
    cmd = _module_tool(
        "ensemble", "cvcraft.tasks.ensemble", "ENSEMBLE_KEYS", "run_ensemble", (), "task"
    )
    res = cmd("detect", [f"preds={paths[0]},{paths[1]}", "method=wbf", "weights=2,1",
                         f"gt={gt}", f"out={out}"], False)  # fmt: skip
    fused = json.loads(out.read_text())
    scale = np.array([W, H, W, H], float) * 2  # into [0, 1] for ensemble-boxes
    for img in range(1, 7):
        ours = per_image(fused, img)
        parts = [per_image(m, img) for m in members]
        tb, ts, tl = eb.weighted_boxes_fusion([p[0] / scale for p in parts], [p[1] for p in parts],
                                              [p[2] for p in parts], [2, 1], 0.55)  # fmt: skip
        assert len(ours[0]) == len(tb)
        np.testing.assert_allclose(ours[1], ts, atol=1e-5)
        np.testing.assert_array_equal(ours[2], tl)
        np.testing.assert_allclose(ours[0], tb * scale, atol=2e-3)
    # the reported AP is the COCO evaluator's on the files, and averaging jittered boxes helps
    assert res["ensemble"]["AP"] == pytest.approx(evaluate_coco_files(gt, out)["AP"])
    assert res["members"][1]["AP"] == pytest.approx(evaluate_coco_files(gt, paths[1])["AP"])
    assert res["gain"] > 0
    saved = json.loads((tmp_path / "ensemble.json").read_text())
    assert saved["gain"] == pytest.approx(res["gain"])


@pytest.mark.parametrize("method", ["nmw", "soft_nms", "nms"])
def test_ensemble_detect_other_methods(tmp_path, method):
    _, paths, members = make_files(tmp_path, n_img=3, seed=1)
    out = tmp_path / f"{method}.json"
    run_ensemble({"task": "detect", "preds": f"{paths[0]},{paths[1]}", "method": method,
                  "out": str(out)})  # fmt: skip
    fused = json.loads(out.read_text())
    scale = np.array([W, H, W, H], float) * 2
    for img in range(1, 4):
        ours = per_image(fused, img)
        parts = [per_image(m, img) for m in members]
        args = ([p[0] / scale for p in parts], [p[1] for p in parts], [p[2] for p in parts])
        if method == "nmw":
            theirs = eb.non_maximum_weighted(*args, iou_thr=0.55)
        elif method == "nms":
            theirs = eb.nms(*args, iou_thr=0.5)
        else:  # its public soft_nms keeps undecayed scores: compare the kept boxes only
            theirs = eb.soft_nms(*args, iou_thr=0.5, sigma=0.5, thresh=0.001)
        assert len(ours[0]) == len(theirs[0])
        o = ours[0][np.lexsort(ours[0].T[::-1])]
        t = (theirs[0] * scale)[np.lexsort((theirs[0] * scale).T[::-1])]
        np.testing.assert_allclose(o, t, atol=2e-3)


def test_ensemble_detect_errors(tmp_path):
    _, paths, _ = make_files(tmp_path, n_img=1)
    preds = f"{paths[0]},{paths[1]}"
    with pytest.raises(ConfigError, match="weights has 3 numbers for 2 preds"):
        run_ensemble({"task": "detect", "preds": preds, "weights": "1,2,3"})
    with pytest.raises(ConfigError, match="method='vote'"):
        run_ensemble({"task": "detect", "preds": preds, "method": "vote"})
    with pytest.raises(ConfigError, match="no such file"):
        run_ensemble({"task": "detect", "preds": str(tmp_path / "nope.json")})
    with pytest.raises(ConfigError, match="sigma= does not apply to method=wbf"):
        run_ensemble({"task": "detect", "preds": preds, "sigma": "0.3"})
    with pytest.raises(ConfigError, match="keys of ensemble detect"):
        run_ensemble({"task": "classify", "weights": "a.pt,b.pt", "preds": preds})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(DataError, match="category_id"):
        run_ensemble({"task": "detect", "preds": str(bad)})
