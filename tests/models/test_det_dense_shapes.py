"""RetinaNet and FCOS learn the shapes through the detect task: a map50 figure each (slow).

Both at a CPU size (ResNet-18 widths 16-128, 32-channel FPN and head), 128 px, 800 shapes,
12 epochs of AdamW. Measured on a loaded 2-core machine (docs/detectors.md): RetinaNet
map50 0.214 (map 0.149) in 477 s of training, FCOS map50 0.694 (map 0.504) in 415 s; the
floors leave room for BLAS differences while still failing on a detector that does not
learn (an untrained one scores map50 ~0.01).
"""

import pytest

from cvcraft.cli import run

TINY = "model_kwargs={fpn_channels: 32, backbone_kw: {widths: [16, 32, 64, 128]}}"
KEYS = ["data=shapes:800", "imgsz=128", "epochs=12", "batch=16", "optimizer=adamw", "lr=0.004",
        "warmup_epochs=1", "mosaic=0", "close_mosaic=0", "scale=0.25", "workers=0",
        "progress=false", "plots=false", "val_interval=4", TINY]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,floor", [("retinanet_resnet18_fpn", 0.12), ("fcos_resnet18_fpn", 0.45)]
)
def test_dense_detector_learns_shapes(tmp_path, model, floor):
    metrics = run(["train", "detect", f"model={model}", *KEYS, f"out={tmp_path / 'run'}"])
    assert metrics["map50"] >= floor
    assert metrics["map"] <= metrics["map50"]
