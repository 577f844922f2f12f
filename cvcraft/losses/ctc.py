"""Connectionist Temporal Classification loss (Graves et al. 2006), the forward algorithm.

CTC scores a label sequence ``l`` against T frames of class log-probabilities without a
frame-level alignment: ``p(l | x) = sum over alignments a with B(a) = l of prod_t y_t(a_t)``,
where B removes repeats then blanks. The sum runs over the extended sequence
``l' = [blank, l_1, blank, l_2, ..., blank]`` (2S + 1 states):
``alpha_t(s) = (alpha_{t-1}(s) + alpha_{t-1}(s-1) + [skip] alpha_{t-1}(s-2)) y_t(l'_s)``,
the skip allowed when ``l'_s`` is a label differing from ``l'_{s-2}``; then
``p(l | x) = alpha_{T-1}(2S) + alpha_{T-1}(2S - 1)``. Computed in log space, vectorised
over the batch and the states; autograd gives the gradient.

Shapes: log_probs (T, B, C) (log-softmax over C), targets (B, S) padded or
(sum(target_lengths),) concatenated, input_lengths (B,), target_lengths (B,).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError, DataError

# A finite stand-in for log(0): logsumexp over all -inf states would give NaN gradients.
NEG = -1e30


def _padded_targets(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """(B, S) targets, from the padded or the concatenated form."""
    if targets.dim() == 2:
        return targets
    if targets.dim() != 1 or int(target_lengths.sum()) != targets.numel():
        raise DataError(
            f"targets: concatenated targets need sum(target_lengths)="
            f"{int(target_lengths.sum())} labels, got shape {tuple(targets.shape)}"
        )
    S = int(target_lengths.max()) if target_lengths.numel() else 0
    out = targets.new_zeros(len(target_lengths), max(S, 1))
    mask = torch.arange(out.shape[1], device=targets.device)[None] < target_lengths[:, None]
    out[mask] = targets
    return out


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> torch.Tensor:
    """CTC negative log-likelihood per sequence, reduced like ``F.ctc_loss``: ``mean``
    divides each loss by its target length, then averages; ``sum``; ``none`` -> (B,).
    An impossible alignment (too few frames) costs ``inf`` (0 with ``zero_infinity``)."""
    if log_probs.dim() != 3:
        raise DataError(f"log_probs must be (T, B, C), got {tuple(log_probs.shape)}")
    if reduction not in ("mean", "sum", "none"):
        raise ConfigError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    T, B, C = log_probs.shape
    input_lengths = torch.as_tensor(input_lengths, device=log_probs.device).long()
    target_lengths = torch.as_tensor(target_lengths, device=log_probs.device).long()
    if input_lengths.shape != (B,) or target_lengths.shape != (B,):
        raise DataError(f"input_lengths and target_lengths must be ({B},) for a batch of {B}")
    if (input_lengths > T).any() or (input_lengths < 1).any():
        raise DataError(f"input_lengths must be in [1, T={T}], got {input_lengths.tolist()}")
    tgt = _padded_targets(targets.to(log_probs.device).long(), target_lengths)
    S = tgt.shape[1]
    if not 0 <= blank < C:
        raise ConfigError(f"blank={blank} is not a class index in [0, {C})")
    # Extended labels l' (B, 2S+1): blanks at even positions, labels at odd ones.
    ext = torch.full((B, 2 * S + 1), blank, dtype=torch.long, device=log_probs.device)
    ext[:, 1::2] = tgt
    L = ext.shape[1]
    skip = torch.zeros(B, L, dtype=torch.bool, device=log_probs.device)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    lp = log_probs if log_probs.dtype == torch.float64 else log_probs.float()  # half: float
    emit = lp.gather(2, ext[None].expand(T, B, L))  # (T, B, L): y_t(l'_s)
    neg = lp.new_full((B, 1), NEG)
    alpha = lp.new_full((B, L), NEG)
    alpha[:, :2] = emit[0, :, :2]
    for t in range(1, T):
        prev1 = torch.cat([neg, alpha[:, :-1]], 1)  # alpha_{t-1}(s-1)
        prev2 = torch.cat([neg, neg, alpha[:, :-2]], 1).masked_fill(~skip, NEG)
        nxt = torch.logsumexp(torch.stack([alpha, prev1, prev2]), 0) + emit[t]
        alpha = torch.where((t < input_lengths)[:, None], nxt, alpha)  # frozen past T_b
    end = 2 * target_lengths  # index of the final blank of each sequence
    last = alpha.gather(1, end[:, None])[:, 0]
    last_label = alpha.gather(1, (end - 1).clamp(min=0)[:, None])[:, 0]
    last_label = torch.where(target_lengths > 0, last_label, torch.full_like(last, NEG))
    nll = -torch.logaddexp(last, last_label)
    impossible = nll > -NEG / 2
    nll = torch.where(impossible, torch.zeros_like(nll) if zero_infinity else
                      torch.full_like(nll, float("inf")), nll)  # fmt: skip
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return (nll / target_lengths.clamp(min=1).float()).mean()


class CTCLoss(nn.Module):
    """:func:`ctc_loss` as a module (``blank``, ``reduction``, ``zero_infinity``)."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__()
        self.blank, self.reduction, self.zero_infinity = blank, reduction, zero_infinity

    def forward(self, log_probs, targets, input_lengths, target_lengths) -> torch.Tensor:
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank,
                        self.reduction, self.zero_infinity)  # fmt: skip
