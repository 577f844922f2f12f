"""The scaling study: the power-law fit recovers a known exponent (oracle: scipy's
``curve_fit`` on the same data in the unscaled form) and the command runs a tiny ladder."""

import json

import numpy as np
import pytest
from scipy.optimize import curve_fit

from cvcraft.errors import ConfigError
from cvcraft.tasks.scaling import fit_power_law, power_law, run_scaling


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_the_fit_recovers_a_known_exponent(alpha):
    rng = np.random.default_rng(1)
    n = np.geomspace(1e4, 1e7, 8)
    y = 50.0 * n**-alpha + 0.2
    y_noisy = y * (1 + rng.normal(0, 0.002, y.shape))
    fit = fit_power_law(n, y_noisy)
    assert fit["alpha"] == pytest.approx(alpha, abs=0.02)
    assert fit["c"] == pytest.approx(0.2, abs=0.02)
    assert power_law(n / fit["scale"], *fit["params_scaled"]) == pytest.approx(y, rel=0.01)
    # the same fit as scipy's directly in log-space-friendly units
    ref, _ = curve_fit(lambda x, a, b, c: a * x**-b + c, n / 1e7, y_noisy, p0=(1, 0.5, 0.1))
    assert fit["alpha"] == pytest.approx(ref[1], rel=1e-3)
    with pytest.raises(ConfigError, match="at least 3 points"):
        fit_power_law([1, 2], [3, 4])


def test_scaling_runs_a_ladder_and_writes_the_fits(tmp_path):
    out = tmp_path / "s"
    res = run_scaling({"task": "classify", "models": "mlp,resnet20,resnet32",
                       "fractions": "0.25,0.5,1.0", "out": str(out), "data": "shapes:96",
                       "imgsz": "16", "epochs": "1", "batch": "16", "workers": "0",
                       "progress": "false"})  # fmt: skip
    assert len(res["runs"]) == 9
    saved = json.loads((out / "scaling.json").read_text())
    assert {"L(N)", "L(D)"} <= set(saved) and (out / "plots" / "scaling.png").is_file()
    full = sorted((r for r in res["runs"] if r["fraction"] == 1.0), key=lambda r: r["params"])
    assert saved["L(N)"]["x"] == [r["params"] for r in full]
    assert saved["L(N)"]["y"] == [r["val_loss"] for r in full]
    refit = fit_power_law(saved["L(D)"]["x"], saved["L(D)"]["y"])
    assert saved["L(D)"]["alpha"] == pytest.approx(refit["alpha"])
