"""openpose_small learns multi-person stick figures end to end (slow): a few CPU minutes of
training reach OKS AP50 well above chance, with people grouped from its own maps."""

import json

import pytest

from cvcraft.cli import main


@pytest.mark.slow
def test_openpose_small_learns_multi_person_stick_figures(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "pose", "model=openpose_small", "data=shapes:400", "people=3",
                 "imgsz=128", "epochs=4", "batch=16", "lr=0.003", "workers=0",
                 "progress=false", "plots=false", "model_kwargs={width: 32, stages: 2}",
                 f"out={run}"]) == 0  # fmt: skip
    m = json.loads((run / "metrics.json").read_text())
    assert m["map50"] >= 0.6 and m["map"] >= 0.25, m
