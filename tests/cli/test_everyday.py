"""Everyday workflows through the CLI (issue 26): each test reproduces a reported failure.

The numbers in the test names are the issue's items.
"""

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
