"""Fixtures of the model-tool tests: a classification checkpoint in the trainer's format
on the synthetic shapes, and a folder of images."""

import pytest
import torch

from cvcraft.data import load_classification
from cvcraft.data.io import write_image
from cvcraft.engine.checkpoint import save_checkpoint
from cvcraft.models import create_model
from cvcraft.transforms.normalize import IMAGENET_STATS

DATA = "shapes:60"  # 60 train / 12 val synthetic 32 px images, 6 classes


def write_ckpt(path, name, model, classes):
    state = {
        "task": "classify", "epoch": 0, "model": model.state_dict(), "ema": None,
        "config": {"seed": 0, "val_fraction": 0.1}, "model_name": name,
        "num_classes": len(classes), "in_chans": 3, "classes": list(classes), "imgsz": 32,
        "model_kwargs": {}, "normalize": "zscore", "norm_stats": IMAGENET_STATS,
    }  # fmt: skip
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    classes = load_classification(DATA, imgsz_hint=32).classes
    model = create_model("resnet20", num_classes=len(classes))
    for m in model.modules():  # non-trivial BN so pruning/quantization see real statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return write_ckpt(tmp_path_factory.mktemp("run") / "best.pt", "resnet20", model, classes)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    val = load_classification(DATA, imgsz_hint=32).val
    for i in range(3):
        write_image(folder / f"img{i}.png", val.load_image(i))
    return folder


@pytest.fixture
def save_ckpt():
    """``save_ckpt(path, model_name, model, classes)`` writes a checkpoint of another model."""
    return write_ckpt


def write_task_ckpt(path, task, name, model, classes, imgsz):
    """A detector / segmenter checkpoint in the trainer's format (random weights)."""
    state = {
        "task": task, "epoch": 0, "model": model.state_dict(), "ema": None,
        "model_name": name, "num_classes": len(classes), "in_chans": 3,
        "classes": list(classes), "imgsz": imgsz, "model_kwargs": {},
        "normalize": "zscore", "norm_stats": IMAGENET_STATS,
    }  # fmt: skip
    save_checkpoint(path, state)
    return path


@pytest.fixture
def save_task_ckpt():
    """``save_task_ckpt(path, task, model_name, model, classes, imgsz)``."""
    return write_task_ckpt
