"""CLI tools of the detection toolkit: eval detect (vs pycocotools), convert, check, models."""

import contextlib
import io
import json

import numpy as np

from cvcraft.cli import main, run


def _coco128(shared_data, require_shared):
    return require_shared(shared_data / "coco128" / "annotations" / "instances_train2017.json")


def test_eval_detect_equals_pycocotools(shared_data, require_shared, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = _coco128(shared_data, require_shared)
    anns = json.loads(gt.read_text())["annotations"]
    rng = np.random.default_rng(0)
    preds = []
    for a in anns:
        if rng.random() < 0.15:
            continue  # missed object
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 0.08, 4) * [w, h, w, h]
        preds.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)],
                "score": float(rng.random()),
            }
        )
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(preds))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ours = run(["eval", "detect", f"gt={gt}", f"pred={pred}"])
    printed = json.loads(buf.getvalue().strip().splitlines()[-1])
    # the names metrics.json uses, in pycocotools' stats order
    assert list(printed) == [
        "map",
        "map50",
        "map75",
        "map_small",
        "map_medium",
        "map_large",
        "mar1",
        "mar10",
        "mar100",
        "mar_small",
        "mar_medium",
        "mar_large",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        ev = COCOeval(coco, coco.loadRes(str(pred)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(list(ours.values()), ev.stats, atol=1e-4)


def test_convert_then_check(shared_data, require_shared, tmp_path, capsys):
    gt = _coco128(shared_data, require_shared)
    out = tmp_path / "voc"
    assert main(["convert", "from=coco", "to=voc", f"src={gt}", f"dst={out}", "images=none"]) == 0
    assert len(list((out / "Annotations").glob("*.xml"))) == 128
    # a YOLO folder with one malformed line and one unknown class
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    import cv2

    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((20, 20, 3), np.uint8))
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2\n7 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images\nval: images\nnames: [thing]\n")
    capsys.readouterr()
    assert main(["check", f"data={root / 'data.yaml'}"]) == 1
    out_text = capsys.readouterr().out
    assert "a.txt:2" in out_text and "a.txt:3" in out_text


def test_tool_keys_are_checked(capsys):
    assert main(["convert", "too=coco", "src=a", "dst=b"]) == 2
    assert 'Did you mean "to"' in capsys.readouterr().err
    assert main(["eval", "detect", "gt=a.json"]) == 2
    assert "pred=" in capsys.readouterr().err


def test_models_table(capsys):
    names = run(["models", "resnet5*"])
    out = capsys.readouterr().out
    assert names == ["resnet50", "resnet50_cifar", "resnet56"]
    line = next(ln for ln in out.splitlines() if ln.startswith("resnet50 "))
    assert "25.56M" in line and "4.1" in line  # 4.1 GMACs at 224 (He et al.)
