"""Decoding CTC outputs into label sequences: greedy (best path) and prefix beam search.

- Greedy: the most likely class per frame, then B(.) — merge repeats, drop blanks. It
  finds the best *alignment*, not always the best *labelling* (many alignments add up).
- Prefix beam search (Graves 2012; Hannun et al. 2014): keep the ``beam`` most probable
  label prefixes, each with two probabilities — ending in a blank (``p_b``) or in its last
  label (``p_nb``) — because a repeated label only extends the prefix after a blank:
  ``p_nb(l + c) += p_b(l) y_t(c)`` if c equals l's last label, else ``p(l) y_t(c)``;
  ``p_nb(l) += p_nb(l) y_t(last)``; ``p_b(l) += p(l) y_t(blank)``. With a beam as large as
  the number of prefixes it is exact: the scores are ``log p(l | x)``.

log_probs (T, B, C) log-softmax (a model's output), lengths (B,) valid frames.
"""

from __future__ import annotations

import numpy as np
import torch

from cvcraft.errors import ConfigError, DataError


def _check(log_probs: torch.Tensor, lengths: torch.Tensor | None) -> np.ndarray:
    if log_probs.dim() != 3:
        raise DataError(f"CTC log_probs must be (T, B, C), got {tuple(log_probs.shape)}")
    T, B, _ = log_probs.shape
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    n = np.asarray(torch.as_tensor(lengths).cpu(), dtype=np.int64)
    if n.shape != (B,) or (n < 0).any() or (n > T).any():
        raise DataError(f"lengths must be ({B},) frame counts in [0, {T}], got {n.tolist()}")
    return n


def ctc_greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0
) -> list[list[int]]:
    """Best-path decoding: per sequence, argmax per frame, merge repeats, drop blanks."""
    n = _check(log_probs, lengths)
    best = log_probs.argmax(2).T.cpu()  # (B, T)
    prev = torch.cat([torch.full_like(best[:, :1], -1), best[:, :-1]], 1)
    keep = (best != blank) & (best != prev)  # a new label starts here
    keep &= torch.arange(best.shape[1])[None] < torch.as_tensor(n)[:, None]
    return [best[b][keep[b]].tolist() for b in range(best.shape[0])]


def ctc_beam_search(
    log_probs: torch.Tensor,
    lengths: torch.Tensor | None = None,
    beam: int = 8,
    blank: int = 0,
    top: int = 1,
) -> list[list[tuple[list[int], float]]]:
    """Prefix beam search: per sequence, the ``top`` best ``(labels, log p(labels | x))``
    pairs, most probable first (``top <= beam``). Each frame extends every kept prefix by
    its ``beam`` most likely labels (all of them when ``beam >= C``)."""
    if beam < 1 or not 1 <= top <= beam:
        raise ConfigError(f"beam search needs beam >= 1 and 1 <= top <= beam, got {beam}, {top}")
    n = _check(log_probs, lengths)
    lp = log_probs.detach().double().cpu().numpy()
    return [_beam_one(lp[: n[b], b], beam, blank, top) for b in range(lp.shape[1])]


def _adder(table: dict[tuple[int, ...], list[float]]):
    """``add(prefix, which, value)``: log-add ``value`` into ``table[prefix][which]``
    (which 0 = ends in blank, 1 = ends in its last label)."""

    def add(prefix: tuple[int, ...], which: int, value: float) -> None:
        cur = table.setdefault(prefix, [-np.inf, -np.inf])
        cur[which] = np.logaddexp(cur[which], value)

    return add


def _beam_one(lp: np.ndarray, beam: int, blank: int, top: int) -> list[tuple[list[int], float]]:
    """Prefix beam search over one sequence's (T, C) log-probabilities."""
    C = lp.shape[1]
    labels = np.array([c for c in range(C) if c != blank])
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}  # (log p_b, p_nb)
    for y in lp:
        nxt: dict[tuple[int, ...], list[float]] = {}
        add = _adder(nxt)

        # each prefix tries its most likely labels this frame (all when beam >= C - 1)
        cand = labels[np.argsort(-y[labels], kind="stable")[:beam]]
        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, 0, total + y[blank])  # a blank keeps the prefix
            last = prefix[-1] if prefix else None
            for c in cand:
                c = int(c)
                if c == last:
                    add(prefix, 1, pnb + y[c])  # the repeat merges into the last label
                    add(prefix + (c,), 1, pb + y[c])  # a new label only after a blank
                else:
                    add(prefix + (c,), 1, total + y[c])
        # (a prefix reached only by an impossible path, e.g. "11" from "1" with no blank
        # seen yet, has probability 0 and is dropped)
        scored = [(k, v, np.logaddexp(*v)) for k, v in nxt.items()]
        ranked = sorted((x for x in scored if x[2] > -np.inf), key=lambda x: -x[2])
        beams = {k: (v[0], v[1]) for k, v, _ in ranked[:beam]}
    out = sorted(((list(k), float(np.logaddexp(*v))) for k, v in beams.items()),
                 key=lambda kv: -kv[1])  # fmt: skip
    return out[:top]
