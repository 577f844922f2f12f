"""More everyday workflows through the CLI (issue 26, items 8-14): each test reproduces a
reported surprise first. The numbers in the test names are the issue's items."""

import pytest

from cvcraft.cli import main
from cvcraft.engine.trainer import Trainer
from cvcraft.errors import ConfigError

FAST = ["imgsz=32", "workers=0", "progress=false", "plots=false"]


def _no_epochs(monkeypatch):
    def refuse(self, epoch):
        raise AssertionError("an epoch ran before the config error")

    monkeypatch.setattr(Trainer, "train_one_epoch", refuse)


# ----------------------------------------------------------------------------- item 12
@pytest.mark.parametrize("task", ["classify", "segment", "detect"])
def test_12_unknown_monitor_is_rejected_before_the_first_epoch(task, tmp_path, capsys, monkeypatch):
    _no_epochs(monkeypatch)
    code = main(["train", task, "data=shapes:64", "batch=16", "epochs=1", "monitor=val_los", *FAST,
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"monitor='val_los' is not a metric of task {task}" in err
    assert 'Did you mean "val_loss"' in err


@pytest.mark.parametrize("task", ["classify", "segment", "detect"])
def test_12_the_early_check_knows_every_column_an_epoch_writes(task, tmp_path, monkeypatch):
    """The probe must not reject a real metric: each metrics.csv column passes the check."""
    seen: list[set[str]] = []
    check = Trainer._check_monitor

    def spy(self):
        seen.append(set(self.task.metric_names()))
        check(self)

    monkeypatch.setattr(Trainer, "_check_monitor", spy)
    out = tmp_path / "r"
    assert main(["train", task, "data=shapes:64", "batch=16", "epochs=1", "ema=true",
                 *FAST, f"out={out}"]) == 0  # fmt: skip
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in header:
        if column == "epoch":
            continue
        monkeypatch.setattr(Trainer, "_check_monitor", check)
        trainer = Trainer.__new__(Trainer)
        trainer.task = type("T", (), {"name": task, "metric_names": lambda s: set(seen[0])})()
        trainer.monitor = column
        trainer.cfg = type("C", (), {"ema": True})()
        trainer._check_monitor()  # raises ConfigError if the probe missed the column


# ----------------------------------------------------------------------------- item 8
def test_08_validation_shows_a_progress_bar(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "classify", "data=shapes:64", "batch=16", "epochs=1", "imgsz=32",
                 "workers=0", "plots=false", "progress=true", f"out={out}"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "val:" in err and "epoch 1/1:" in err
    capsys.readouterr()
    assert (
        main(
            [
                "val",
                "classify",
                "data=shapes:64",
                f"weights={out / 'best.pt'}",
                "workers=0",
                "plots=false",
                "progress=true",
                f"out={tmp_path / 'v'}",
            ]
        )
        == 0
    )
    assert "val:" in capsys.readouterr().err
    assert (
        main(
            [
                "val",
                "classify",
                "data=shapes:64",
                f"weights={out / 'best.pt'}",
                "workers=0",
                "plots=false",
                "progress=false",
                f"out={tmp_path / 'v2'}",
            ]
        )
        == 0
    )
    assert "val:" not in capsys.readouterr().err


def test_08_many_sliding_windows_get_a_warning():
    import torch
    from torch import nn

    from cvcraft.tasks.segment.task import MANY_WINDOWS, sliding_window_logits, window_starts

    model = nn.Conv2d(3, 2, 1)
    # 4 x 4 = 16 windows of 32 px (stride 24) cover 104 px: at the limit, no warning
    assert len(window_starts(104, 32, 24)) ** 2 == MANY_WINDOWS
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sliding_window_logits(model, torch.rand(1, 3, 104, 104), 32, overlap=0.25)
    # one more window row and column: 25 windows, warned with the advice
    with pytest.warns(UserWarning, match=r"25 windows of 32x32 px on each 128x128 image.*imgsz="):
        sliding_window_logits(model, torch.rand(1, 3, 128, 128), 32, overlap=0.25)


# ----------------------------------------------------------------------------- item 9
def _png_folder(root, classes, n=6):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / c / f"{i}.png"), rng.integers(0, 256, (32, 32, 3), np.uint8))
    return root


def test_09_macosx_folders_and_forks_are_not_classes_or_images(tmp_path):
    from cvcraft.data.imagefolder import read_imagefolder

    root = _png_folder(tmp_path / "d", ["cat", "dog"])
    _png_folder(root / "__MACOSX", ["cat"])  # what unzip leaves next to the classes
    (root / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 not an image")  # a fork
    data = read_imagefolder(root)
    assert data.classes == ["cat", "dog"] and len(data) == 12


def test_09_one_class_is_refused(tmp_path, capsys):
    root = _png_folder(tmp_path / "d", ["only"], n=12)
    code = main(["train", "classify", f"data={root}", "batch=4", "epochs=1", *FAST,
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "one class (only): a classifier needs at least two" in err


def test_09_classes_in_another_order_reindex_the_labels(tmp_path):
    from cvcraft.data.datasets import load_classification
    from cvcraft.errors import DataError

    root = _png_folder(tmp_path / "d", ["ant", "bee", "cat"], n=4)
    found = load_classification(root, val_fraction=0.25, seed=0)
    wanted = ["cat", "ant", "bee"]
    mine = load_classification(root, val_fraction=0.25, seed=0, classes=wanted)
    assert mine.classes == wanted and mine.train.classes == wanted
    for a, b in ((found.train, mine.train), (found.val, mine.val)):
        for i in range(len(a)):  # same image, and its label names the same class
            assert a.describe(i) == b.describe(i)
            assert a.classes[a.labels[i]] == b.classes[b.labels[i]]
    with pytest.raises(DataError, match=r"the list has \['cow'\] that the data lacks"):
        load_classification(root, classes=["ant", "bee", "cat", "cow"])
    with pytest.raises(DataError, match=r"the list repeats \['ant'\]"):
        load_classification(root, classes=["ant", "ant", "bee", "cat"])


def test_09_classes_apply_to_shapes(tmp_path):
    from cvcraft.data.datasets import load_classification
    from cvcraft.errors import DataError

    found = load_classification("shapes:60", seed=0)
    wanted = list(reversed(found.classes))
    mine = load_classification("shapes:60", seed=0, classes=wanted)
    assert mine.classes == wanted
    assert [found.classes[k] for k in found.train.labels] == [wanted[k] for k in mine.train.labels]
    with pytest.raises(DataError, match="that the list lacks"):
        load_classification("shapes:60", classes=["circle", "square"])


def test_09_jpeg_masks_are_refused(tmp_path):
    import cv2
    import numpy as np

    from cvcraft.data.segmentation import read_mask
    from cvcraft.errors import DataError

    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 2
    cv2.imwrite(str(tmp_path / "m.jpg"), mask)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    assert set(np.unique(read_mask(tmp_path / "m.png")).tolist()) == {0, 2}
    with pytest.raises(DataError, match=r"m\.jpg: a JPEG mask: lossy.*save the masks as PNG"):
        read_mask(tmp_path / "m.jpg")


def test_09_boxes_training_clips_or_drops_are_counted(tmp_path, capsys):
    import cv2
    import numpy as np

    root = tmp_path / "yolo"
    for split, n in (("train", 8), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(
                str(root / "images" / split / f"{i}.jpg"), np.full((64, 64, 3), 40, np.uint8)
            )
            lines = ["0 0.5 0.5 0.25 0.25"]
            if split == "train" and i == 0:
                lines += ["0 0.95 0.5 0.3 0.2", "0 0.5 0.5 0.0 0.2"]  # leaves; no area
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: box\n"
    )
    code = main(["train", "detect", f"data={root / 'data.yaml'}", "model=yolo_p", "imgsz=64",
                 "batch=4", "epochs=1", "workers=0", "progress=false", "plots=false",
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "data: train: 1 box(es) leave their image (training clips them to it) and 1 have no area"
        in out
    )


# ----------------------------------------------------------------------------- item 10
def test_10_the_pixel_limit_advice_is_a_knob_that_exists(tmp_path, monkeypatch, capsys):
    import cv2
    import numpy as np

    from cvcraft.data.io import read_image
    from cvcraft.errors import DataError

    root = tmp_path / "d"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(root / c / f"{i}.png"), np.zeros((50, 100, 3), np.uint8))
    monkeypatch.setenv("CVCRAFT_MAX_PIXELS", "4999")
    with pytest.raises(DataError, match=r"5000 pixels.*environment variable CVCRAFT_MAX_PIXELS"):
        read_image(root / "a" / "0.png")
    code = main(["train", "classify", f"data={root}", "batch=2", "epochs=1", *FAST,
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    assert code == 2 and "CVCRAFT_MAX_PIXELS=5000" in capsys.readouterr().err
    monkeypatch.setenv("CVCRAFT_MAX_PIXELS", "5000")  # following the advice
    assert read_image(root / "a" / "0.png").shape == (50, 100, 3)
    assert read_image(root / "a" / "0.png", max_pixels=5000).shape == (50, 100, 3)
    monkeypatch.setenv("CVCRAFT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="CVCRAFT_MAX_PIXELS='lots' must be a number of pixels"):
        read_image(root / "a" / "0.png")


def test_10_advice_names_no_option_the_cli_lacks(tmp_path, capsys):
    (tmp_path / "list.csv").write_text("path,label\nnope.png,a\nnone.png,b\n")
    code = main(["train", "classify", f"data={tmp_path / 'list.csv'}", *FAST,
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "root=" not in err and "relative paths are read from" in err
    (tmp_path / "plain").mkdir()
    code = main(["check", f"data={tmp_path / 'plain'}"])
    err = capsys.readouterr().err
    assert code == 2 and "explicitly" not in err and "`cvcraft check format=`" in err


# ----------------------------------------------------------------------------- item 16
def test_16_check_and_convert_do_not_import_torch(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import cv2
    import numpy as np

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((40, 50, 3), np.uint8))
    gt = {"images": [{"id": 1, "width": 50, "height": 40, "file_name": "a.jpg"}],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20],
                           "area": 400, "iscrowd": 0,
                           "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]}]}  # fmt: skip
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances.json").write_text(json.dumps(gt))
    code = (
        "import sys; from cvcraft.cli import run; "
        f"run(['check', 'data={tmp_path}']); "
        f"run(['convert', 'src={tmp_path}', 'to=yolo', 'out={tmp_path / 'y'}']); "
        "print('TORCH', 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "no problems found" in res.stdout and "TORCH False" in res.stdout
    assert (tmp_path / "y").is_dir()


# ----------------------------------------------------------------------------- item 14
@pytest.mark.parametrize("task", ["classify", "detect", "segment"])
def test_14_val_and_predict_help_list_inference_keys_only(task, capsys):
    from cvcraft.engine.config import train_only_keys
    from cvcraft.tasks import get_task

    config = get_task(task).config
    assert main(["train", task, "--help"]) == 0
    train_help = capsys.readouterr().out
    keys = {line.split()[0] for line in train_help.splitlines() if line.startswith("  ")}
    assert {"epochs", "lr", "weights", "imgsz"} <= keys
    hidden = train_only_keys(config)
    assert hidden <= keys  # every hidden key is a real key of the task (no typo in the lists)
    for command in ("val", "predict"):
        assert main([command, task, "--help"]) == 0
        said = capsys.readouterr().out
        shown = {line.split()[0] for line in said.splitlines() if line.startswith("  ")}
        assert shown == keys - hidden and "weights" in shown and "epochs" not in shown
        assert f"training keys: `cvcraft train {task} --help`" in said


def test_14_no_top5_when_there_are_five_classes_or_fewer(tmp_path):
    import json

    from cvcraft.cli import run
    from cvcraft.tasks.classify.task import ClassifyEvaluator

    root = _png_folder(tmp_path / "d", ["a", "b", "c"], n=8)
    out = tmp_path / "r"
    summary = run(["train", "classify", f"data={root}", "batch=4", "epochs=1", *FAST,
                   f"out={out}"])  # fmt: skip
    saved = json.loads((out / "metrics.json").read_text())
    assert "top1" in summary and "top5" not in summary and "top5" not in saved
    assert not any(k.startswith("top") and k != "top1" for k in saved)
    # six classes: top-5 means something, and is there (the shapes runs above have it)
    assert "top5" in ClassifyEvaluator(6, 5, torch_device()).metric_names()
    assert "top5" not in ClassifyEvaluator(5, 5, torch_device()).metric_names()


def torch_device():
    import torch

    return torch.device("cpu")


# ----------------------------------------------------------------------------- item 13
def _mask_dataset(root, bad: bool):
    import cv2
    import numpy as np

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(4):
            img = np.full((32, 40, 3), 90, np.uint8)
            mask = np.zeros((32, 40), np.uint8)
            mask[8:20, 10:30] = 1 + i % 2
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), img)
            cv2.imwrite(str(root / "masks" / split / f"{i}.png"), mask)
    if bad:
        cv2.imwrite(str(root / "images" / "train" / "9.jpg"), np.zeros((8, 8, 3), np.uint8))
        (root / "masks" / "train" / "1.png").unlink()  # image 1 loses its mask...
        cv2.imwrite(str(root / "masks" / "train" / "1.jpg"), np.zeros((32, 40), np.uint8))
        cv2.imwrite(str(root / "masks" / "train" / "2.png"), np.full((32, 40), 7, np.uint8))
        cv2.imwrite(str(root / "masks" / "val" / "3.png"), np.zeros((16, 40), np.uint8))
    yaml = ("train: {images: images/train, masks: masks/train}\n"
            "val: {images: images/val, masks: masks/val}\n"
            "classes: [background, a, b]\n")  # fmt: skip
    (root / "config.yaml").write_text(yaml)
    return root / "config.yaml"


def test_13_check_reads_a_mask_yaml_as_segmentation(tmp_path, capsys):
    good = _mask_dataset(tmp_path / "good", bad=False)
    assert main(["check", f"data={good}"]) == 0
    assert "no problems found" in capsys.readouterr().out
    bad = _mask_dataset(tmp_path / "bad", bad=True)
    assert main(["check", f"data={bad}"]) == 1
    said = capsys.readouterr().out
    assert "[missing_mask] 1 image(s)" in said  # 9.jpg
    assert "1.jpg: [bad_mask] a JPEG mask" in said
    assert "2.png: [bad_mask] mask value 7 is not one of the 3 classes" in said
    assert "3.png: [size_mismatch] mask is 40x16 but its image" in said
    assert "malformed" not in said


def test_13_augment_takes_the_readme_mosaic_and_finds_the_task(tmp_path, capsys):
    aug = tmp_path / "aug.yaml"
    aug.write_text("augment: [{name: mosaic}, {name: random_affine, degrees: 10}, "
                   "{name: hsv}, {name: hflip}]\n")  # fmt: skip
    out = tmp_path / "g.png"
    assert main(["augment", "data=shapes", f"pipeline={aug}", f"out={out}", "n=4"]) == 0
    assert out.is_file() and "task=detect" in capsys.readouterr().out
    masks = _mask_dataset(tmp_path / "m", bad=False)
    assert main(["augment", f"data={masks}", f"out={out}", "n=4", "imgsz=32"]) == 0
    assert "task=segment" in capsys.readouterr().out  # not read as detection
    assert main(["augment", f"data={masks.parent}", "task=segment", f"out={out}", "n=2",
                 "imgsz=32"]) == 0  # fmt: skip


def test_13_augment_default_is_what_training_does(tmp_path):
    import cv2

    from cvcraft.tasks.detect.task import data_sources, train_preview
    from cvcraft.viz.augment_grid import render_augment_grid

    train, _ = data_sources("shapes:8", 64, 0)
    kw = dict(n=4, seed=0, imgsz=64, out=tmp_path / "d.png")
    default = render_augment_grid(train, "boxes", "default", train_preview=train_preview, **kw)
    plain = render_augment_grid(train, "boxes", "none", **{**kw, "out": tmp_path / "n.png"})
    assert (cv2.imread(str(default)) != cv2.imread(str(plain))).any()  # Mosaic, HSV, flips
    # the grid's cells are the training dataset's epoch-0 items
    ds = train_preview(train, 64, 0)
    again = render_augment_grid(train, "boxes", "default", train_preview=lambda *a: ds,
                                **{**kw, "out": tmp_path / "a.png"})  # fmt: skip
    assert (cv2.imread(str(default)) == cv2.imread(str(again))).all()


def test_14_predicted_masks_use_the_dataset_class_ids(tmp_path):
    import cv2
    import numpy as np

    root = tmp_path / "ids"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(8):
            img = np.full((32, 32, 3), 20, np.uint8)
            mask = np.zeros((32, 32), np.uint16)
            y, x = rng.integers(0, 16, 2)
            img[y : y + 16, x : x + 16] = (200, 40, 40)
            mask[y : y + 16, x : x + 16] = 300  # class "b" is stored as 300
            img[0:6, 0:32] = (40, 200, 40)
            mask[0:6, 0:32] = 7  # class "a" as 7
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), img)
            cv2.imwrite(str(root / "masks" / split / f"{i}.png"), mask)
    (root / "config.yaml").write_text(
        "train: {images: images/train, masks: masks/train}\n"
        "val: {images: images/val, masks: masks/val}\nclasses: {0: bg, 7: a, 300: b}\n"
    )
    run = tmp_path / "r"
    assert main(["train", "segment", f"data={root / 'config.yaml'}", "model=unet",
                 "imgsz=32", "batch=4", "epochs=1", "workers=0", "progress=false",
                 "plots=false", f"out={run}"]) == 0  # fmt: skip
    assert main(["predict", "segment", f"weights={run / 'best.pt'}",
                 f"source={root / 'images' / 'val'}", "workers=0", "progress=false",
                 f"out={tmp_path / 'p'}"]) == 0  # fmt: skip
    pred = cv2.imread(str(tmp_path / "p" / "masks" / "0.png"), cv2.IMREAD_UNCHANGED)
    assert pred.dtype == np.uint16 and set(np.unique(pred).tolist()) <= {0, 7, 300}


def test_coco_polygons_need_three_points(tmp_path):
    import json

    from cvcraft.data.detection.coco import read_coco
    from cvcraft.errors import DataError

    (tmp_path / "a.jpg").write_bytes(b"")
    gt = {"images": [{"id": 1, "width": 50, "height": 40, "file_name": "a.jpg"}],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20],
                           "area": 400, "iscrowd": 0,
                           "segmentation": [[5, 5, 25, 25]]}]}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(DataError, match=r"gt\.json.*>= 3 points"):
        read_coco(tmp_path / "gt.json", tmp_path)
    gt["annotations"][0]["segmentation"] = [[5, 5, 25, 5, 25, 25]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert len(read_coco(tmp_path / "gt.json", tmp_path).images[0]) == 1
