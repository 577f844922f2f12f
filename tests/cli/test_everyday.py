"""Everyday workflows through the CLI (issue 26): each test reproduces a reported failure.

The numbers in the test names are the issue's items.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvcraft.cli import main, run
from cvcraft.engine.checkpoint import load_checkpoint

FAST = ["imgsz=32", "workers=0", "progress=false", "plots=false"]


def _image_folder(root: Path, classes: tuple[str, ...], n: int = 8, size: int = 32) -> Path:
    """A tiny ImageFolder of random PNGs (``n`` per class)."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / c / f"{i}.png"), img)
    return root


@pytest.fixture(scope="module")
def six_class_run(tmp_path_factory):
    """A 1-epoch resnet20 run on the 6-class shapes."""
    out = tmp_path_factory.mktemp("six") / "run"
    run(["train", "classify", "data=shapes:96", "model=resnet20", "batch=32", "epochs=1",
         *FAST, f"out={out}"])  # fmt: skip
    return out


# ----------------------------------------------------------------------------- item 1
def test_01_finetune_cvcraft_checkpoint_on_new_classes(six_class_run, tmp_path, capsys):
    data = _image_folder(tmp_path / "two", ("cat", "dog"))
    src = load_checkpoint(six_class_run / "best.pt")
    assert src["num_classes"] == 6
    out = tmp_path / "ft"
    code = main(["train", "classify", f"data={data}", "model=resnet20", "batch=8", "epochs=1",
                 *FAST, f"out={out}", f"weights={six_class_run / 'best.pt'}"])  # fmt: skip
    said = capsys.readouterr()
    assert code == 0, said.err
    line = [ln for ln in said.out.splitlines() if ln.startswith("weights:")]
    assert len(line) == 1
    assert "re-initialised the head for 2 classes (the file has 6 classes" in line[0]
    assert "fc.weight" in line[0] and "fc.bias" in line[0]
    ft = load_checkpoint(out / "last.pt")
    assert ft["num_classes"] == 2 and ft["model"]["fc.weight"].shape == (2, 64)
    # the body came from the 6-class checkpoint: the first conv of the fine-tuned run moved
    # only one epoch away from it (a fresh init would be unrelated)
    a = src["model"]["conv1.weight"].flatten()
    b = ft["model"]["conv1.weight"].flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9


def test_01_finetune_torchvision_state_dict(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.resnet18()  # the ImageNet layout: 1000 classes
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    data = _image_folder(tmp_path / "two", ("cat", "dog"), n=4)
    out = tmp_path / "ft"
    code = main(["train", "classify", f"data={data}", "model=resnet18", "batch=4", "epochs=1",
                 "lr=0", "warmup_epochs=0", *FAST, f"out={out}",
                 f"weights={tmp_path / 'resnet18.pth'}"])  # fmt: skip
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "re-initialised the head for 2 classes" in said.out and "(1000, 512)" in said.out
    ft = load_checkpoint(out / "last.pt")["model"]
    # lr=0: the loaded body is exactly torchvision's
    key = "layer4.1.conv2.weight"
    torch.testing.assert_close(ft[key], tv.state_dict()[key])


def test_01_wrong_architecture_names_the_right_model_key(six_class_run, tmp_path, capsys):
    data = _image_folder(tmp_path / "two", ("cat", "dog"), n=4)
    weights = six_class_run / "best.pt"
    code = main(["train", "classify", f"data={data}", "model=resnet32", "batch=4", "epochs=1",
                 *FAST, f"out={tmp_path / 'x'}", f"weights={weights}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "model=resnet20" in err
    for bogus in ("strict=False", "num_classes="):
        assert bogus not in err


def test_01_model_kwargs_num_classes_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "classify", "data=shapes:32", "model_kwargs={num_classes: 2}", *FAST,
                 f"out={tmp_path / 'x'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "model_kwargs: num_classes is set by the task" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- item 2
def test_02_out_of_an_existing_run_is_refused(six_class_run, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(six_class_run, old)
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    argv = ["train", "classify", "data=shapes:64", "model=resnet20", "batch=32", "epochs=1",
            "seed=5", *FAST, f"out={old}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "resume=true" in err and "exist_ok=true" in err
    after = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    assert after == before  # nothing of the earlier run was touched
    # val/predict into a training run folder would overwrite its config.yaml/metrics.json
    assert main(["val", "classify", "data=shapes:64", f"weights={old / 'best.pt'}",
                 "workers=0", f"out={old}"]) == 2  # fmt: skip
    assert "already holds a run" in capsys.readouterr().err
    # exist_ok=true replaces it: none of the old run's checkpoints stay mixed in
    (old / "last.prev.pt").write_bytes(b"a file of the old run")
    assert main([*argv, "exist_ok=true"]) == 0
    said = capsys.readouterr().out
    assert "exist_ok=true: replaced the run" in said
    assert not (old / "last.prev.pt").exists()  # epoch 1 of 1 keeps no previous
    assert load_checkpoint(old / "last.pt")["config"]["seed"] == 5
    # and an empty existing folder is fine without exist_ok
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*argv[:-1], f"out={empty}"]) == 0


# ----------------------------------------------------------------------------- item 3
def _yolo_dataset(root: Path, val_objects: bool) -> Path:
    """A tiny YOLO dataset: one red square per train image; val images with or without."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 4)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = np.full((64, 64, 3), 30, np.uint8)
            lines = []
            if split == "train" or val_objects:
                x, y = rng.integers(8, 40, 2)
                img[y : y + 16, x : x + 16] = (50, 50, 200)
                lines.append(f"0 {(x + 8) / 64:.4f} {(y + 8) / 64:.4f} 0.25 0.25")
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), img)
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines))
    yaml = "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: box\n  1: other\n"
    (root / "data.yaml").write_text(yaml)
    return root / "data.yaml"


def _pycocotools_ap(gt: Path, pred: Path) -> float:
    """The oracle: pycocotools' AP@[.5:.95] of the same two files."""
    import contextlib
    import io

    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    with contextlib.redirect_stdout(io.StringIO()):
        g = coco.COCO(str(gt))
        e = cocoeval.COCOeval(g, g.loadRes(str(pred)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return float(e.stats[0])


DET = ["model=yolo_p", "imgsz=64", "batch=8", "workers=0", "progress=false", "plots=false"]


def test_03_detection_with_a_val_split_without_objects(tmp_path, capsys):
    data = _yolo_dataset(tmp_path / "yolo", val_objects=False)
    out = tmp_path / "run"
    code = main(["train", "detect", f"data={data}", *DET, "epochs=2", "close_mosaic=0",
                 f"out={out}"])  # fmt: skip
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "val images have no objects" in said.out and "best.pt follows val_loss" in said.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["map"] == -1.0 and metrics["monitor"] == "val_loss"
    assert np.isfinite(metrics["val_loss"])
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    # val on the same data
    code = main(["val", "detect", f"data={data}", f"weights={out / 'best.pt'}", *DET,
                 f"out={tmp_path / 'v'}"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    # cvcraft eval detect with a ground truth without objects (and one without the key)
    gt = {"images": [{"id": 1, "width": 64, "height": 64, "file_name": "a.jpg"}],
          "categories": [{"id": 1, "name": "box"}]}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "score": 0.9}]
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    summary = run(
        ["eval", "detect", f"gt={tmp_path / 'gt.json'}", f"pred={tmp_path / 'pred.json'}"]
    )
    assert summary["AP"] == -1.0  # pycocotools' value for categories without gt
    assert summary["AP"] == _pycocotools_ap(tmp_path / "gt.json", tmp_path / "pred.json")
    (tmp_path / "gt.json").write_text(json.dumps({**gt, "annotations": []}))
    summary = run(
        ["eval", "detect", f"gt={tmp_path / 'gt.json'}", f"pred={tmp_path / 'pred.json'}"]
    )
    assert summary["AP"] == -1.0


# ----------------------------------------------------------------------------- item 4
def test_04_models_table_survives_models_it_cannot_count(capsys):
    from cvcraft.models import create_model

    names = run(["models", "fasterrcnn_resnet18_fpn"])
    out = capsys.readouterr().out.splitlines()
    assert names == ["fasterrcnn_resnet18_fpn"]
    row = [ln for ln in out if ln.startswith("fasterrcnn_resnet18_fpn")][0]
    assert "detect" in row and "n/a" in row and "data-dependent" in row
    params = sum(p.numel() for p in create_model("fasterrcnn_resnet18_fpn").parameters())
    assert f"{params / 1e6:.2f}M" in row  # the oracle: the parameters of a real build
    # AlexNet below its minimum input: a row with the reason, then the other models
    assert main(["models", "[al]*", "imgsz=32"]) == 0
    out = capsys.readouterr().out
    assert "AlexNet needs inputs of at least 63x63" in out
    assert "alexnet" in out and out.count("\n") >= 3


@pytest.mark.slow
def test_04_models_as_the_readme_shows_it(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "yolo_n" in out and "resnet18" in out
