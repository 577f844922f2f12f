"""cvcraft.losses.ctc vs torch.nn.functional.ctc_loss: values for every reduction, padded
and concatenated targets, varying input/target lengths, repeated labels, impossible
alignments (inf / zero_infinity), and gradients with respect to the logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.ctc import CTCLoss, ctc_loss


def _case(seed, T=12, B=5, C=6, S=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, C, generator=g, dtype=torch.float64)
    targets = torch.randint(1, C, (B, S), generator=g)
    targets[0, :3] = 2  # repeats need a blank between them
    input_lengths = torch.tensor([T, T - 1, 7, T, 5])[:B]
    target_lengths = torch.tensor([S, 4, 3, 0, 2])[:B]
    return logits, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_values_and_gradients_equal_torch(reduction, seed):
    logits, targets, il, tl = _case(seed)
    results = []
    for fn in (ctc_loss, F.ctc_loss):
        x = logits.clone().requires_grad_()
        loss = fn(F.log_softmax(x, 2), targets, il, tl, reduction=reduction)
        (loss * torch.arange(1.0, loss.numel() + 1, dtype=torch.float64).view_as(loss)).sum(
        ).backward()  # fmt: skip
        results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-6)


def test_concatenated_targets_and_module():
    logits, targets, il, tl = _case(3)
    lp = F.log_softmax(logits, 2)
    flat = torch.cat([targets[b, : tl[b]] for b in range(len(tl))])
    ours = CTCLoss(reduction="none")(lp, flat, il, tl)
    torch.testing.assert_close(ours, F.ctc_loss(lp, flat, il, tl, reduction="none"))


def test_impossible_alignment_is_inf_or_zero():
    lp = F.log_softmax(torch.randn(3, 2, 4, dtype=torch.float64), 2)
    targets = torch.tensor([[1, 1, 1], [1, 2, 3]])  # "111" needs 5 frames; "123" fits in 3
    il, tl = torch.tensor([3, 3]), torch.tensor([3, 3])
    ours = ctc_loss(lp, targets, il, tl, reduction="none")
    ref = F.ctc_loss(lp, targets, il, tl, reduction="none")
    assert torch.isinf(ours[0]) and torch.isinf(ref[0])
    torch.testing.assert_close(ours[1], ref[1])
    x = lp.clone().requires_grad_()
    z = ctc_loss(x, targets, il, tl, reduction="sum", zero_infinity=True)
    z.backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(z, F.ctc_loss(lp, targets, il, tl, reduction="sum",
                                             zero_infinity=True))  # fmt: skip


def test_bad_inputs():
    lp = F.log_softmax(torch.randn(4, 2, 3), 2)
    t = torch.tensor([[1, 2], [2, 1]])
    with pytest.raises(DataError, match="T, B, C"):
        ctc_loss(lp[0], t, [4, 4], [2, 2])
    with pytest.raises(DataError, match="input_lengths"):
        ctc_loss(lp, t, [5, 4], [2, 2])
    with pytest.raises(ConfigError, match="reduction"):
        ctc_loss(lp, t, [4, 4], [2, 2], reduction="max")
    with pytest.raises(DataError, match="concatenated"):
        ctc_loss(lp, torch.tensor([1, 2, 1]), [4, 4], [2, 2])
