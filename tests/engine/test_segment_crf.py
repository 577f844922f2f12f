"""crf=true in the segment task: the val forward returns dense-CRF refined log-probabilities
(ops.crf.dense_crf, itself equal to pydensecrf), which repair a noisy model on shapes."""

import numpy as np
import pytest
import torch
from torch import nn

from cvcraft.data.collate import collate_segment
from cvcraft.data.loader import build_loader
from cvcraft.data.segmentation import make_shapes_segmentation, segment_dataset
from cvcraft.errors import ConfigError
from cvcraft.metrics.segmentation import SegmentationMetrics
from cvcraft.ops.crf import dense_crf
from cvcraft.tasks import task_config
from cvcraft.tasks.segment.task import crf_refine, segmenter_forward


class NoisyOracle(nn.Module):
    """Logits = 2 * one-hot(truth) + Gaussian noise: a model that is often wrong per pixel."""

    def __init__(self, masks: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.masks, self.classes = masks, classes

    def forward(self, x):
        g = torch.Generator().manual_seed(0)
        y = self.masks.clamp(max=self.classes - 1)
        onehot = torch.nn.functional.one_hot(y, self.classes).permute(0, 3, 1, 2).float()
        return 2.0 * onehot + 1.6 * torch.randn(onehot.shape, generator=g)


def test_crf_refine_equals_dense_crf_per_image_and_helps_a_noisy_model():
    data = make_shapes_segmentation(4, 32, seed=3)
    loader = build_loader(segment_dataset(data, None), 4, shuffle=False, collate_fn=collate_segment)
    batch = next(iter(loader))
    model = NoisyOracle(batch["masks"].long(), 7)
    plain = segmenter_forward(nn.Identity(), torch.device("cpu"), 32, 0.25, 32)(model, batch)
    refined = segmenter_forward(nn.Identity(), torch.device("cpu"), 32, 0.25, 32, 5)(model, batch)
    for i in range(4):
        img = batch["images"][i].permute(1, 2, 0).numpy()
        ref = dense_crf(plain[i].softmax(0).numpy(), img, iterations=5)
        np.testing.assert_allclose(refined[i].exp().numpy(), ref, atol=1e-6)
    scores = []
    for logits in (plain, refined):
        m = SegmentationMetrics(7, 255)
        m.update(logits, batch["masks"].long())
        scores.append(m.compute()["miou"])
    assert scores[1] > scores[0] + 0.1, scores  # the CRF repairs most of the noise
    # a grey (1-channel) batch is read as RGB with equal channels
    grey = batch["images"][:, :1]
    one = crf_refine(plain[:1], grey[:1], 2)
    ref = dense_crf(plain[0].softmax(0).numpy(), grey[0].expand(3, -1, -1).permute(1, 2, 0).numpy(),
                    iterations=2)  # fmt: skip
    np.testing.assert_allclose(one[0].exp().numpy(), ref, atol=1e-6)


def test_crf_keys_are_checked():
    cfg = task_config("segment", {"crf": True, "crf_iterations": 3})
    assert cfg.crf and cfg.crf_iterations == 3
    with pytest.raises(ConfigError, match="crf_iterations"):
        task_config("segment", {"crf_iterations": -1})
