"""``cvcraft augment`` through cli.main: grids for detect (mosaic from YAML), segment and
classify (batch cutmix), drawing of boxes/masks, and argument errors."""

import cv2
import numpy as np
import pytest

from cvcraft.cli import main
from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.tasks.tools import run_augment
from cvcraft.viz.augment_grid import PALETTE, draw_sample, make_grid


def _read(path):
    img = cv2.imread(str(path))
    assert img is not None
    return img


def test_detect_mosaic_pipeline_yaml(tmp_path):
    spec = tmp_path / "aug.yaml"
    spec.write_text("- {name: mosaic, size: 128}\n- {name: hflip, p: 0.5}\n")
    out = tmp_path / "grid.png"
    assert main(["augment", "data=shapes", f"pipeline={spec}", f"out={out}", "n=4", "cols=2"]) == 0
    img = _read(out)
    # 2 x 2 cells of 128 px enlarged to 256 (min cell 160 -> factor 2), 4 px gaps
    assert img.shape == (2 * 256 + 3 * 4, 2 * 256 + 3 * 4, 3)


def test_segment_and_classify_cutmix(tmp_path):
    seg = run_augment({"data": "shapes", "task": "segment", "imgsz": "64", "n": "3",
                       "out": str(tmp_path / "s.png")})  # fmt: skip
    assert _read(seg).shape[:2] == (2 * 192 + 3 * 4, 2 * 192 + 3 * 4)  # 64 px x3, 2 cols
    cls = run_augment({"data": "shapes:64", "task": "classify", "pipeline": "cutmix", "n": "5",
                       "out": str(tmp_path / "c.png"), "seed": "3"})  # fmt: skip
    a = _read(cls)
    again = run_augment({"data": "shapes:64", "task": "classify", "pipeline": "cutmix", "n": "5",
                         "out": str(tmp_path / "c2.png"), "seed": "3"})  # fmt: skip
    np.testing.assert_array_equal(a, _read(again))  # same seed, same grid


def test_config_style_yaml_and_errors(tmp_path, capsys):
    spec = tmp_path / "cfg.yaml"
    spec.write_text("epochs: 3\naugment:\n  - {name: vflip, p: 1.0}\n")
    out = tmp_path / "g.png"
    assert main(["augment", "data=shapes:32", "task=classify", f"pipeline={spec}", f"out={out}",
                 "n=2"]) == 0  # fmt: skip
    assert main(["augment", "data=shapes", "pipelin=x.yaml"]) != 0
    assert "pipeline" in capsys.readouterr().err  # did-you-mean names the key
    assert main(["augment", "data=shapes", "pipeline=nosuch.yaml", f"out={out}"]) != 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("- hflip\n- {name: mosaic, size: 64}\n")
    assert main(["augment", "data=shapes", f"pipeline={bad}", f"out={out}"]) != 0


def test_draw_sample_boxes_masks_and_grid():
    img = np.zeros((20, 20, 3), np.uint8)
    masks = np.zeros((1, 20, 20), bool)
    masks[0, 5:10, 5:10] = True
    s = Sample(img, boxes=[[5, 5, 10, 10]], box_labels=[2], masks=masks)
    out = draw_sample(s, ["a", "b", "c"], min_size=40, mask_alpha=0.5)
    assert out.shape == (40, 40, 3)
    # mask interior (away from the box outline) is half the class colour
    np.testing.assert_array_equal(out[14, 14], np.round(PALETTE[2] * 0.5 + 1e-9).astype(np.uint8))
    assert (out[0:8, 30:] == 0).all()  # far from the object nothing is drawn
    assert tuple(out[10, 12]) == tuple(PALETTE[2])  # box outline (left edge x = 10) in colour
    grid = make_grid([out, out[:20, :30]], cols=2, pad=2)
    assert grid.shape == (44, 2 * 40 + 6, 3)


def test_unknown_task(tmp_path):
    with pytest.raises(ConfigError, match="task='nosuchtask': use auto or one of classify"):
        run_augment({"data": "shapes", "task": "nosuchtask", "out": str(tmp_path / "x.png")})
