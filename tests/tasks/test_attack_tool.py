"""``cvcraft attack``: the robustness table against a direct evaluation, files, errors."""

import numpy as np
import pytest
import torch

from cvcraft.data import load_classification
from cvcraft.errors import ConfigError
from cvcraft.tasks.attack_tool import run_attack
from cvcraft.tasks.classify.task import PixelModel
from cvcraft.tasks.model_tools import load_classifier_any, preprocess_of

DATA = "shapes:60"  # the conftest checkpoint's data: 60 train / 12 val, 6 classes


def test_attack_table_matches_direct_evaluation(ckpt, tmp_path):
    rows = run_attack({"weights": str(ckpt), "data": DATA, "method": "fgsm,pgd",
                       "eps": "0,2/255,8/255", "steps": "3", "n": "12", "grid": "4",
                       "out": str(tmp_path)})  # fmt: skip
    for f in ("robustness.csv", "robustness.json", "robustness_linf.png",
              "adversarial_examples.png"):  # fmt: skip
        assert (tmp_path / f).exists(), f
    acc = {(r["method"], r["eps"]): r["accuracy"] for r in rows}
    assert len(rows) == 6 and all(r["images"] == 12 for r in rows)
    # eps = 0 is clean accuracy, computed here without the runner
    model, meta = load_classifier_any(ckpt, torch.device("cpu"))
    pixel = PixelModel(model, preprocess_of(meta, torch.device("cpu")))
    val = load_classification(DATA, imgsz_hint=32).val
    x = torch.from_numpy(np.stack([val.load_image(i) for i in range(12)])).permute(0, 3, 1, 2)
    with torch.no_grad():
        clean = float(
            (pixel(x.float() / 255).argmax(1) == torch.from_numpy(val.labels)).float().mean()
        )
    assert acc[("fgsm", 0.0)] == acc[("pgd", 0.0)] == pytest.approx(clean)
    assert acc[("pgd", 8 / 255)] <= acc[("pgd", 0.0)]


def test_attack_rejects_negative_eps(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="eps=-0.1 must be >= 0"):
        run_attack({"weights": str(ckpt), "data": DATA, "eps": "-0.1", "out": str(tmp_path)})
