"""Heat-map overlay values: OpenCV's JET ends (blue at 0, red at 1) blended by alpha."""

import numpy as np
import pytest

from cvcraft.errors import ConfigError
from cvcraft.viz.heatmap import overlay_heatmap, plot_heatmaps


def test_overlay_colours_and_blend():
    img = np.zeros((2, 3, 3), np.uint8)
    heat = np.array([[0.0, 0.5, 1.0], [1.0, 1.0, 0.0]], np.float32)
    full = overlay_heatmap(img, heat, alpha=1.0)
    assert full[0, 0].tolist() == [0, 0, 128]  # JET(0): dark blue (RGB)
    assert full[0, 2].tolist() == [128, 0, 0]  # JET(1): dark red
    assert full[0, 1, 1] > 200  # JET(0.5): green-ish middle
    none = overlay_heatmap(np.full((2, 3, 3), 200, np.uint8), heat, alpha=0.0)
    assert (none == 200).all()
    half = overlay_heatmap(np.full((2, 3, 3), 100, np.uint8), heat, alpha=0.5)
    assert half[0, 0].tolist() == [50, 50, 114]  # round(0.5*100 + 0.5*(0, 0, 128))
    gray = overlay_heatmap(np.full((4, 6), 10, np.uint8), np.zeros((2, 3)), alpha=0.5)
    assert gray.shape == (4, 6, 3)  # gray image -> RGB, heat resized to it
    with pytest.raises(ConfigError, match="alpha=2"):
        overlay_heatmap(img, heat, alpha=2)
    with pytest.raises(ConfigError, match="uint8 RGB"):
        overlay_heatmap(img.astype(np.float32), heat)


def test_heatmap_figure_is_written(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    p = plot_heatmaps([img, img], [np.zeros((16, 16))] * 2, ["a", "b"], tmp_path / "h.png")
    assert p.stat().st_size > 1000
    with pytest.raises(ConfigError, match="as many images"):
        plot_heatmaps([img], [], ["a"], tmp_path / "x.png")
