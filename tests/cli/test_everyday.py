"""Everyday workflows through the CLI (issue 26): each test reproduces a reported failure.

The numbers in the test names are the issue's items.
"""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvcraft.cli import main, run
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.errors import ConfigError

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
    assert summary["map"] == -1.0  # pycocotools' value for categories without gt
    assert summary["map"] == _pycocotools_ap(tmp_path / "gt.json", tmp_path / "pred.json")
    (tmp_path / "gt.json").write_text(json.dumps({**gt, "annotations": []}))
    summary = run(
        ["eval", "detect", f"gt={tmp_path / 'gt.json'}", f"pred={tmp_path / 'pred.json'}"]
    )
    assert summary["map"] == -1.0


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


# ----------------------------------------------------------------------------- items 5, 6
@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """yolo_p trained 2 epochs on the tiny YOLO data (val with objects)."""
    root = tmp_path_factory.mktemp("det")
    data = _yolo_dataset(root / "yolo", val_objects=True)
    out = root / "run"
    run(["train", "detect", f"data={data}", *DET, "epochs=2", "close_mosaic=0", "lr=0.01",
         f"out={out}"])  # fmt: skip
    return data, out


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\xff\xd8 this is not a JPEG")
    return path


def test_05_predict_keeps_going_past_an_unreadable_image(six_class_run, detector, tmp_path, capsys):
    src = _image_folder(tmp_path / "src", ("x",), n=3)
    bad = _corrupt(src / "x" / "1.png")
    for task, weights in (
        ("classify", six_class_run / "best.pt"),
        ("detect", detector[1] / "best.pt"),
    ):
        out = tmp_path / f"p_{task}"
        code = main(["predict", task, f"weights={weights}", f"source={src}", f"out={out}"])
        err = capsys.readouterr().err
        assert code == 2 and "1 of 3 images could not be read" in err, (task, err)
        assert "skip_bad=true" in err
        skipped = json.loads((out / "skipped.json").read_text())
        assert [s["path"] for s in skipped] == [str(bad)]
        preds = json.loads((out / "predictions.json").read_text())
        if task == "classify":
            assert sorted(Path(p["path"]).name for p in preds) == ["0.png", "2.png"]
        out2 = tmp_path / f"q_{task}"
        code = main(["predict", task, f"weights={weights}", f"source={src}", f"out={out2}",
                     "skip_bad=true"])  # fmt: skip
        said = capsys.readouterr()
        assert code == 0, said.err
        assert "skip_bad=true: 1 of 3 images could not be read" in said.out


def test_05_skip_bad_in_detection_training(tmp_path, capsys):
    data = _yolo_dataset(tmp_path / "yolo", val_objects=True)
    _corrupt(tmp_path / "yolo" / "images" / "train" / "3.jpg")
    argv = ["train", "detect", f"data={data}", *DET, "epochs=1", "close_mosaic=0"]
    assert main([*argv, f"out={tmp_path / 'a'}"]) == 2  # the default stops, naming the file
    assert "3.jpg" in capsys.readouterr().err
    assert main([*argv, f"out={tmp_path / 'b'}", "skip_bad=true"]) == 0
    said = capsys.readouterr().out
    # the YOLO reader opens headers: the file is left out there, one line per image
    assert "3.jpg: [unreadable_image]" in said
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 0


def test_05_skip_bad_in_segmentation_training_and_predict(tmp_path, capsys):
    root = tmp_path / "seg"
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(10):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 1
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 255, (32, 32, 3), np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
    _corrupt(root / "images" / "5.png")
    argv = ["train", "segment", f"data={root}", "imgsz=32", "batch=4", "epochs=1", "workers=0",
            "progress=false", "plots=false", "model_kwargs={base: 4, depth: 2}"]  # fmt: skip
    assert main([*argv, f"out={tmp_path / 'a'}"]) == 2
    assert "5.png" in capsys.readouterr().err
    out = tmp_path / "b"
    assert main([*argv, f"out={out}", "skip_bad=true"]) == 0
    assert "skip_bad=true: skipped 1 of" in capsys.readouterr().out
    src = root / "images"
    code = main(["predict", "segment", f"weights={out / 'best.pt'}", f"source={src}",
                 f"out={tmp_path / 'p'}"])  # fmt: skip
    assert code == 2 and "1 of 10 images could not be read" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())) == 9


def test_06_predict_detect_feeds_eval_detect(detector, tmp_path, capsys):
    data, run_dir = detector
    images = sorted((data.parent / "images" / "val").glob("*.jpg"))
    # the ground truth with the dataset's own ids: not 0..N-1, categories not 1..K in order
    gt = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 9, "name": "other"}, {"id": 5, "name": "box"}],
    }
    for k, f in enumerate(images):
        gt["images"].append({"id": 100 + 7 * k, "file_name": f.name, "width": 64, "height": 64})
        for line in (data.parent / "labels" / "val" / f"{f.stem}.txt").read_text().splitlines():
            c, cx, cy, w, h = map(float, line.split())
            box = [(cx - w / 2) * 64, (cy - h / 2) * 64, w * 64, h * 64]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": 100 + 7 * k,
                                      "category_id": 5 if c == 0 else 9, "bbox": box,
                                      "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred_dir = tmp_path / "pred"
    run(["predict", "detect", f"weights={run_dir / 'best.pt'}", f"source={images[0].parent}",
         f"out={pred_dir}", f"gt={tmp_path / 'gt.json'}", "conf=0.001"])  # fmt: skip
    preds = json.loads((pred_dir / "predictions.json").read_text())
    assert preds and {p["image_id"] for p in preds} <= {100 + 7 * k for k in range(len(images))}
    assert {p["category_id"] for p in preds} <= {5, 9}
    summary = run(["eval", "detect", f"gt={tmp_path / 'gt.json'}",
                   f"pred={pred_dir / 'predictions.json'}"])  # fmt: skip
    # the oracle: pycocotools on the same pair, and `cvcraft val` of the same weights
    assert summary["map"] == pytest.approx(
        _pycocotools_ap(tmp_path / "gt.json", pred_dir / "predictions.json"), abs=1e-12
    )
    val = run(["val", "detect", f"data={data}", f"weights={run_dir / 'best.pt'}", *DET,
               f"out={tmp_path / 'v'}"])  # fmt: skip
    assert summary["map"] == pytest.approx(val["map"], abs=1e-3)
    # without gt=: numeric file names are the image ids (COCO's naming)
    run(["predict", "detect", f"weights={run_dir / 'best.pt'}", f"source={images[0].parent}",
         f"out={tmp_path / 'pred2'}", "conf=0.001"])  # fmt: skip
    preds = json.loads((tmp_path / "pred2" / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} <= {int(f.stem) for f in images}


# ----------------------------------------------------------------------------- item 7
def test_07_val_segment_reads_the_checkpoint_before_the_data(tmp_path, capsys):
    import yaml

    run_dir = tmp_path / "run"
    assert main(["train", "segment", "data=shapes:24", "imgsz=32", "resize=40", "epochs=1",
                 "batch=8", "workers=0", "progress=false", "plots=false",
                 "model_kwargs={base: 4, depth: 2}", f"out={run_dir}"]) == 0  # fmt: skip
    trained = json.loads((run_dir / "metrics.json").read_text())
    capsys.readouterr()
    # no imgsz=/resize= given: the checkpoint's apply (the default imgsz would render the
    # shapes at another size and give other numbers)
    val = tmp_path / "val"
    assert main(["val", "segment", "data=shapes:24", f"weights={run_dir / 'best.pt'}",
                 "workers=0", "progress=false", "plots=false", f"out={val}"]) == 0  # fmt: skip
    metrics = json.loads((val / "metrics.json").read_text())
    assert metrics["miou"] == pytest.approx(trained["miou"], abs=1e-9)
    saved = yaml.safe_load((val / "config.yaml").read_text())
    assert saved["imgsz"] == 32 and saved["resize"] == 40


# ----------------------------------------------------------------------------- item 11
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["lr_mults={fc: x}"], "lr_mults: fc='x' must be a number >= 0"),
        (["model_kwargs={drop_rate: abc}"], "model_kwargs={'drop_rate': 'abc'}: model resnet20"),
        (["model_kwargs={depth: 7}"], "cannot be built with them"),
        (["imgsz=100000"], "imgsz=100000 is larger than 16384 px"),
        (["model=alexnet"], "model=alexnet cannot take 32x32 inputs"),
    ],
)
def test_11_one_line_errors_instead_of_tracebacks(args, expected, tmp_path, capsys):
    code = main(["train", "classify", "data=shapes:64", "batch=32", "epochs=1", *FAST,
                 f"out={tmp_path / 'r'}", *args])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1


def test_11_file_system_errors_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    assert main(["pack", "data=shapes:8", f"out={tmp_path / 'afile'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use") and "Not a directory" in err
    # the run folder turns read-only mid-run (root ignores modes: the OS error is injected)
    import cvcraft.engine.trainer as trainer_mod

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(trainer_mod, "save_checkpoint", refuse)
    code = main(["train", "classify", "data=shapes:64", "batch=32", "epochs=1", *FAST,
                 f"out={tmp_path / 'r'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "last.pt: Permission denied" in err and "Traceback" not in err


def test_11_help_into_a_closed_pipe_is_quiet():
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.Popen([sys.executable, "-m", "cvcraft.cli", "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)  # fmt: skip
    p.stdout.close()  # `| head` that has already gone
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


# ----------------------------------------------------------------------------- item 16
def test_16_eval_detect_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    gt = {"images": [{"id": 1, "width": 50, "height": 50}, {"id": 2, "width": 50, "height": 50}],
          "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400,
               "iscrowd": 0},
              {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10, 0, 30, 15], "area": 450,
               "iscrowd": 0}]}  # fmt: skip
    pred = [{"image_id": 1, "category_id": 1, "bbox": [6, 4, 20, 21], "score": 0.9},
            {"image_id": 2, "category_id": 3, "bbox": [20, 0, 30, 15], "score": 0.8},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.3}]  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    args = ["eval", "detect", f"gt={tmp_path / 'gt.json'}", f"pred={tmp_path / 'pred.json'}"]
    code = (
        "import json, sys; from cvcraft.cli import run; "
        f"s = run({args!r}); "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'map': s['map']}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    said = json.loads(res.stdout.strip().splitlines()[-1])
    assert said["torch"] is False
    assert said["map"] == pytest.approx(
        _pycocotools_ap(tmp_path / "gt.json", tmp_path / "pred.json"), abs=1e-12
    )


# ----------------------------------------------------------------------------- item 15
def test_15_cli_sets_passive_waiting_before_torch_and_threads_key(tmp_path):
    import subprocess
    import sys

    args = ["train", "classify", "data=shapes:64", "batch=32", "epochs=1", "threads=1", *FAST]
    code = (
        "import json, os, sys; from cvcraft.cli import main; "
        f"assert 0 == main({args!r} + ['out={tmp_path}/' + str(os.getpid())]); "
        "import torch; print(json.dumps({'wait': os.environ.get('OMP_WAIT_POLICY'), "
        "'threads': torch.get_num_threads()}))"
    )
    root = str(Path(__file__).resolve().parents[2])
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    for env, wait in (({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**base, **env, "PYTHONPATH": root})  # fmt: skip
        assert res.returncode == 0, res.stderr
        said = json.loads(res.stdout.strip().splitlines()[-1])
        assert said == {"wait": wait, "threads": 1}  # a user's own policy is kept


def test_15_threads_auto_is_capped_at_usable_cores(monkeypatch):
    from cvcraft.engine import threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "usable_cores", lambda: 1)
        torch.set_num_threads(2)
        assert threads.set_threads(0) == 1 == torch.get_num_threads()
        assert threads.set_threads(2) == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    env: dict[str, str] = {}
    assert threads.passive_waiting(env) is ("torch" not in __import__("sys").modules)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "active"}
    assert threads.passive_waiting(env) is False and env == {"OMP_WAIT_POLICY": "active"}
    with pytest.raises(ConfigError, match="threads=-1 must be >= 0"):
        run(["train", "classify", "threads=-1"])


# ----------------------------------------------------------------------------- items 12, 14
def test_12_ctrl_c_before_the_first_checkpoint_promises_nothing(tmp_path, capsys, monkeypatch):
    from cvcraft.engine.trainer import Trainer

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupt)
    out = tmp_path / "r"
    code = main(["train", "classify", "data=shapes:64", "batch=32", "epochs=1", *FAST,
                 f"out={out}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 130 and "before the first epoch finished" in err and "last.pt" not in err


def test_14_version_config_task_checkpoint_mode_and_convert_out(six_class_run, tmp_path, capsys):
    from cvcraft import __version__

    with pytest.raises(SystemExit, match="^0$") as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"cvcraft {__version__}"
    # checkpoints get the mode every other file gets (umask applied), not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    mode = (six_class_run / "best.pt").stat().st_mode & 0o777
    assert mode == (six_class_run / "metrics.csv").stat().st_mode & 0o777 == 0o666 & ~umask
    # train --config run/config.yaml takes the task the file names
    data = _yolo_dataset(tmp_path / "yolo", val_objects=True)
    assert main(["train", "detect", f"data={data}", *DET, "epochs=1", "close_mosaic=0",
                 f"out={tmp_path / 'a'}"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "a" / "config.yaml"),
                 f"out={tmp_path / 'b'}"]) == 0  # fmt: skip
    assert load_checkpoint(tmp_path / "b" / "last.pt")["task"] == "detect"
    # convert takes out= like every other command
    report = run(["convert", "from=yolo", "to=coco", f"src={data}", f"out={tmp_path / 'c'}"])
    assert report is not None and list((tmp_path / "c").rglob("*.json"))


# ----------------------------------------------------------------------------- item 8
def test_08_no_second_evaluation_when_the_best_epoch_is_the_last(tmp_path, monkeypatch):
    from cvcraft.tasks.classify.task import ClassifyTask

    calls = []
    original = ClassifyTask.evaluate

    def counting(self, model, loader=None):
        calls.append(1)
        return original(self, model, loader)

    monkeypatch.setattr(ClassifyTask, "evaluate", counting)
    out = tmp_path / "r"
    metrics = run(["train", "classify", "data=shapes:64", "batch=32", "epochs=2", *FAST,
                   "monitor=epoch", "monitor_mode=max", f"out={out}"])  # fmt: skip
    assert len(calls) == 2  # one per epoch; the final numbers are epoch 2's
    rows = (out / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert metrics["best_epoch"] == 2
    assert float(last["top1"]) == pytest.approx(metrics["top1"], rel=1e-5)


# ----------------------------------------------------------------------------- item 10
def test_10_a_changed_checkpoint_gets_advice_the_cli_can_follow(six_class_run, tmp_path, capsys):
    import shutil

    shutil.copy(six_class_run / "best.pt.sha256", tmp_path / "best.pt.sha256")
    state = load_checkpoint(six_class_run / "best.pt")
    state["note"] = "edited on purpose"
    torch.save(state, tmp_path / "best.pt")  # the sidecar now lists another digest
    code = main(["val", "classify", "data=shapes:96", f"weights={tmp_path / 'best.pt'}",
                 "workers=0", "plots=false", f"out={tmp_path / 'v'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "does not match its checksum" in err
    assert "verify=False" not in err and "delete best.pt.sha256" in err
    (tmp_path / "best.pt.sha256").unlink()  # following the advice
    with pytest.warns(UserWarning, match="no best.pt.sha256 checksum file"):
        assert load_checkpoint(tmp_path / "best.pt")["note"] == "edited on purpose"


def test_12_resume_skips_the_folder_of_a_failed_start(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["train", "classify", "data=shapes:64", "batch=32", *FAST]
    assert main([*base, "epochs=1"]) == 0  # runs/classify/train
    assert main([*base, "epochs=1", "model=alexnet"]) == 2  # fails: leaves train2
    assert (tmp_path / "runs" / "classify" / "train2").exists()
    capsys.readouterr()
    assert main([*base, "resume=true"]) == 0
    assert "runs/classify/train/last.pt" in capsys.readouterr().out
