"""Attack pictures: the perturbation's amplification, the figures written."""

import numpy as np

from cvcraft.viz.adversarial import amplify, plot_adversarial_grid, plot_robustness


def test_amplify_maps_zero_to_grey_and_peak_to_the_ends():
    d = np.array([[[0.0, 8 / 255, -8 / 255]]])
    assert amplify(d).tolist() == [[[128, 255, 0]]]
    assert (amplify(np.zeros((2, 2, 3))) == 128).all()


def test_attack_figures_are_written(tmp_path):
    x = np.random.default_rng(1).random((3, 8, 8, 3))
    adv = np.clip(x + 0.01, 0, 1)
    flags = {"right_clean": [True] * 3, "right_adv": [False] * 3}
    p = plot_adversarial_grid(x, adv, ["c"] * 3, ["d"] * 3, tmp_path / "g.png", **flags)
    assert p.stat().st_size > 1000
    p = plot_robustness([0, 2, 8], {"pgd": [0.9, 0.5, 0.1]}, tmp_path / "r.png")
    assert p.stat().st_size > 1000
