"""Per-model defaults (``model_default_cfg``) and the detectors' shared ``valid_targets``."""

import pytest
import torch
import torchvision

from cvcraft.engine.optim import OPTIMIZERS
from cvcraft.errors import RegistryError
from cvcraft.models import create_model, list_models, model_default_cfg, model_package
from cvcraft.models import registry as reg
from cvcraft.models.detection.base import valid_targets

KEYS = {"package", "input_size", "mean", "std", "optimizer", "lr", "weight_decay"}


def test_every_model_has_a_complete_default_cfg():
    tv_names = set(torchvision.models.list_models())
    for name in list_models():
        cfg = model_default_cfg(name)
        assert KEYS <= set(cfg), name
        assert cfg["package"] == model_package(name)
        assert cfg["optimizer"] in OPTIMIZERS, name  # a name the trainer can build
        assert 0 < cfg["lr"] < 1 and cfg["weight_decay"] >= 0
        for k in ("mean", "std"):
            assert cfg[k] == "dataset" or (len(cfg[k]) == 3 and all(0 <= v <= 1 for v in cfg[k]))
        assert len(cfg["input_size"]) == 3
        if "tv_twin" in cfg:
            assert cfg["tv_twin"] in tv_names, name


@pytest.mark.parametrize(
    "name,size",
    [("resnet50", (3, 224, 224)), ("resnet20", (3, 32, 32)), ("lenet5", (1, 32, 32)),
     ("segnet", (3, 360, 480)), ("yolov3", (3, 416, 416)), ("vit_b_16", (3, 224, 224))],
)  # fmt: skip
def test_input_size_is_the_models_default_input_size(name, size):
    assert model_default_cfg(name)["input_size"] == size
    device = "cpu" if name == "yolov3" else "meta"  # yolov3 validates its anchors by value
    with torch.device(device):
        assert tuple(create_model(name).default_input_size) == size


def test_reading_a_default_cfg_leaves_the_rng_alone_and_recipes_are_the_papers():
    reg._INPUT_SIZES.clear()
    state = torch.get_rng_state()
    model_default_cfg("yolov3")  # falls back from the meta device to a real build
    assert torch.equal(torch.get_rng_state(), state)
    assert model_default_cfg("resnet50")["lr"] == 0.1
    assert model_default_cfg("mobilenet_v2")["weight_decay"] == 4e-5
    swin = model_default_cfg("swin_t")
    assert (swin["optimizer"], swin["lr"], swin["weight_decay"]) == ("adamw", 1e-3, 0.05)
    assert model_default_cfg("resnet20")["mean"] == "dataset"
    with pytest.raises(RegistryError, match="unknown model"):
        model_default_cfg("resnet_nope")


def test_valid_targets_drops_boxes_below_min_size_at_the_boundary():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [5, 5, 5.0005, 9], [1, 1, 1.001, 2], [3, 3, 2, 8.0]]
    )  # widths 10, 5e-4, 1e-3 (exactly min_size: kept), -1
    t = [{"boxes": boxes, "labels": torch.tensor([0, 1, 2, 3])}, {"boxes": torch.zeros(0, 4),
         "labels": torch.zeros(0, dtype=torch.int64)}]  # fmt: skip
    out = valid_targets(t, min_size=1e-3)
    w = boxes[:, 2] - boxes[:, 0]
    assert out[0]["labels"].tolist() == [i for i in range(4) if w[i] >= 1e-3]
    assert out[0]["labels"].tolist() == [0, 2]
    assert out[1]["boxes"].shape == (0, 4)
