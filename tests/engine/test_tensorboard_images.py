"""TensorBoard: the model graph and the task's pictures (issue 24), read back with
tensorboard's EventAccumulator."""

import cv2
import numpy as np
import pytest

from cvcraft.engine.trainer import Trainer
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask


def test_tensorboard_holds_the_graph_and_every_plot(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "r"
    cfg = task_config("classify", {"data": "shapes:64", "model": "resnet20", "imgsz": "32",
                                   "batch": "16", "epochs": "1", "workers": "0",
                                   "progress": "false", "tensorboard": "true",
                                   "out": str(out)})  # fmt: skip
    Trainer(ClassifyTask(cfg), cfg).fit()
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    graph = acc.Graph()
    ops = {node.op for node in graph.node}
    assert any("conv" in op.lower() for op in ops)  # the traced network, not an empty graph
    pngs = sorted(p.stem for p in (out / "plots").glob("*.png"))
    assert pngs and sorted(t.removeprefix("plots/") for t in acc.Tags()["images"]) == pngs
    for stem in pngs:  # each image is the PNG on disk, pixel for pixel
        event = acc.Images(f"plots/{stem}")[-1]
        got = cv2.imdecode(np.frombuffer(event.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
        want = cv2.imread(str(out / "plots" / f"{stem}.png"), cv2.IMREAD_COLOR)
        assert got.shape == want.shape and (got == want).all()
        assert event.step == 1
