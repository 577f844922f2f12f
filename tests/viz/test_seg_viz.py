"""Segmentation palette, overlays and the result grid."""

import numpy as np

from cvcraft.viz.segmentation import (
    color_palette,
    colorize_mask,
    overlay_mask,
    plot_segmentation_grid,
)


def test_palette_is_pascal_voc():
    pal = color_palette(256)
    # the published PASCAL VOC 2012 colours of these class ids
    voc = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
           5: (128, 0, 128), 8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128)}  # fmt: skip
    for k, rgb in voc.items():
        assert tuple(pal[k]) == rgb
    assert tuple(pal[255]) == (255, 255, 255)
    assert len({tuple(c) for c in pal[:255]}) == 255  # every class its own colour


def test_colorize_and_overlay_values():
    mask = np.array([[0, 1], [15, 255]], np.uint8)
    assert colorize_mask(mask)[1, 0].tolist() == [192, 128, 128]
    img = np.full((2, 2, 3), 100, np.uint8)
    out = overlay_mask(img, mask, alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100]  # background untouched
    assert out[1, 1].tolist() == [100, 100, 100]  # ignore untouched
    assert out[0, 1].tolist() == [114, 50, 50]  # 0.5 * 100 + 0.5 * (128, 0, 0)


def test_grid_writes_png(tmp_path):
    img = np.zeros((16, 16, 3), np.uint8)
    m = np.zeros((16, 16), np.uint8)
    m[4:8] = 2
    p = plot_segmentation_grid([img, img], [m, m], [m, m], tmp_path / "g.png", ["a", "b", "c"])
    assert p.exists() and p.stat().st_size > 1000
