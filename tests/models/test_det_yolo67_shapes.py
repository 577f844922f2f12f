"""YOLOv6, YOLOv7 and CenterNet learn the shapes through ``cvcraft train detect`` (slow: a
map50 figure each), and one epoch of each runs through the task in the default set.

Measured on the shared 2-core machine at load 10-19 (docs/yolov6_v7_centernet.md): yolov6_p
map50 0.435 (map 0.279) in 348 s of training; the floors leave room for BLAS and load
differences and still fail a detector that does not learn (untrained: map50 ~0.0).
yolov7_n: map50 0.593 (map 0.394) in 1006 s of training at load ~18.

CenterNet's slow test is an overfit check (``det_overfit``): on held-out shapes its tiny
stride-32-only trunk learns slowly (map50 0.06 after 10 epochs at 128 px, 0.12 after 400
steps without augmentation), too close to an untrained model for a floor; memorising 32
scenes is decisive instead: map50 1.00 / 0.88 (seeds 0 / 1) after 100 steps, ~20 s.
"""

import pytest
from det_overfit import overfit_map50

from cvcraft.cli import run

KEYS = ["epochs=10", "batch=16", "optimizer=adamw",
        "warmup_epochs=1", "mosaic=0", "close_mosaic=0", "scale=0.25", "workers=0",
        "progress=false", "plots=false", "val_interval=5"]  # fmt: skip
CENTERNET_TINY = "model_kwargs={width: 0.25, backbone_kw: {widths: [16, 32, 64, 128]}}"
SMALL = ["data=shapes:1000", "imgsz=64", "lr=0.004"]
RUNS = {"yolov6_p": (SMALL, 0.30), "yolov7_n": (SMALL, 0.30)}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(RUNS))
def test_detector_learns_shapes(tmp_path, model):
    extra, floor = RUNS[model]
    metrics = run(["train", "detect", f"model={model}", *KEYS, *extra, f"out={tmp_path / 'r'}"])
    assert metrics["map50"] >= floor
    assert metrics["map"] <= metrics["map50"]


@pytest.mark.slow
def test_centernet_overfits_shapes():
    tiny = {"width": 0.25, "backbone_kw": {"widths": [16, 32, 64, 128]}}
    m50 = overfit_map50("centernet_resnet18", tiny, scenes=32, imgsz=128, steps=100, batch=16,
                        lr=0.004)  # fmt: skip
    assert m50 >= 0.6  # measured 1.00 / 0.88 (seeds 0 / 1); untrained 0.0


# Plumbing only (one epoch on 16 scenes): the learning checks are the slow tests above.
# yolov6 shares yolo_p's outputs and loss (its one-epoch run is covered by the slow test)
@pytest.mark.parametrize("model", ["centernet_resnet18", "yolov7_n"])
def test_one_epoch_through_the_detect_task(tmp_path, model):
    extra = [CENTERNET_TINY] if model == "centernet_resnet18" else ["model_kwargs={width: 0.125}"]
    metrics = run(["train", "detect", f"model={model}", "data=shapes:16", "imgsz=64", "epochs=1",
                   "batch=8", "workers=0", "progress=false", "plots=false", *extra,
                   f"out={tmp_path / 'r'}"])  # fmt: skip
    assert 0.0 <= metrics["map50"] <= 1.0 and "map" in metrics
