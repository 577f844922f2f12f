"""One-hot and label smoothing vs torch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError, DataError
from cvcraft.transforms import one_hot, smooth_labels


def soft_cross_entropy(logits, targets):
    """-sum_k y_k log softmax(z)_k, averaged over the batch (the oracle's definition)."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def test_one_hot_matches_torch_and_numpy():
    labels = torch.tensor([0, 3, 2, 3])
    torch.testing.assert_close(one_hot(labels, 5), F.one_hot(labels, 5).float())
    np.testing.assert_array_equal(one_hot(labels.numpy(), 5), np.eye(5)[labels.numpy()])
    with pytest.raises(
        DataError, match=r"labels span \[5, 5\] but num_classes=5; check the class list"
    ):
        one_hot(torch.tensor([5]), 5)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smoothing_equals_torch_cross_entropy(eps):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g)
    labels = torch.randint(0, 7, (16,), generator=g)
    targets = smooth_labels(labels, 7, eps)
    ref = F.cross_entropy(logits, labels, label_smoothing=eps)
    torch.testing.assert_close(soft_cross_entropy(logits, targets), ref)
    torch.testing.assert_close(targets.sum(-1), torch.ones(16))
    np.testing.assert_allclose(smooth_labels(labels.numpy(), 7, eps), targets.numpy(), rtol=1e-6)


def test_smoothing_soft_targets_and_errors():
    soft = torch.tensor([[0.7, 0.3, 0.0]])
    torch.testing.assert_close(smooth_labels(soft, 3, 0.3), soft * 0.7 + 0.1)
    with pytest.raises(ConfigError, match=r"smoothing must be in \[0, 1\), got 1\.0"):
        smooth_labels(torch.tensor([1]), 3, 1.0)
    with pytest.raises(DataError, match="targets have last dim 4, expected 3"):
        smooth_labels(torch.zeros(2, 4), 3, 0.1)
