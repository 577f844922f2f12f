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


def test_a_width_ladder_of_one_model(tmp_path):
    # widths= turns resnet20's first-stage channels: stages (w, 2w, 4w), so the runs' parameter
    # counts are those of the models built directly at each width
    from cvcraft.models import create_model

    res = run_scaling({"task": "classify", "model": "resnet20", "widths": "4,8,12",
                       "fractions": "0.5,1.0", "out": str(tmp_path / "w"),
                       "data": "shapes:64", "imgsz": "16", "epochs": "1", "batch": "16",
                       "workers": "0", "progress": "false"})  # fmt: skip
    assert len(res["runs"]) == 6 and "L(N)" in res and "L(D)" not in res  # 2 fractions < 3
    n_cls = len(json.loads((tmp_path / "w" / "resnet20_w4_f1.0" / "classes.json").read_text()))
    want = {w: sum(p.numel() for p in create_model("resnet20", num_classes=n_cls, width=w)
                   .parameters()) for w in (4, 8, 12)}  # fmt: skip
    got = {r["model"]: r["params"] for r in res["runs"] if r["fraction"] == 1.0}
    assert got == {f"resnet20_w{w}": n for w, n in want.items()}
    conv1 = create_model("resnet20", width=12).conv1
    assert conv1.out_channels == 12
    default = sum(p.numel() for p in create_model("resnet20").parameters())
    assert default == 272474  # He et al.'s 0.27M at the default width 16
    with pytest.raises(ConfigError, match="not both"):
        run_scaling({"task": "classify", "models": "mlp", "widths": "4", "model": "resnet20"})
    with pytest.raises(ConfigError, match="needs the model"):
        run_scaling({"task": "classify", "widths": "4,8"})
    with pytest.raises(ConfigError, match="must be an integer"):
        run_scaling({"task": "classify", "widths": "4,x", "model": "resnet20"})
