import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA

from cvcraft.errors import DataError
from cvcraft.viz.projection import plot_projection


def test_projection_plot_shows_the_pca_coordinates(tmp_path):
    x, y = make_blobs(90, n_features=6, centers=3, random_state=0)
    fig = plot_projection(x, y, "pca", ["a", "b", "c"], tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    pts = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    ref = PCA(2).fit_transform(x)
    ref = np.concatenate([ref[y == k] for k in range(3)])
    np.testing.assert_allclose(np.abs(pts), np.abs(ref), atol=1e-9)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]


def test_projection_errors():
    with pytest.raises(DataError, match="labels"):
        plot_projection(np.zeros((5, 3)), np.zeros(4))
