"""CTC decoding: greedy vs a plain per-sequence reference; prefix beam search vs brute-force
enumeration of every alignment (C^T of them) on tiny alphabets and lengths, whose summed
probabilities per labelling are also checked against torch's CTC loss."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError, DataError
from cvcraft.models.recognition.ctc_decode import ctc_beam_search, ctc_greedy_decode


def _collapse(path, blank=0):
    out, prev = [], None
    for c in path:
        if c != prev and c != blank:
            out.append(c)
        prev = c
    return tuple(out)


def _brute_force(lp: np.ndarray, blank=0) -> dict[tuple[int, ...], float]:
    """log p(l | x) of every labelling, summing over all alignments."""
    T, C = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(C), repeat=T):
        p = np.exp(sum(lp[t, c] for t, c in enumerate(path)))
        key = _collapse(path, blank)
        probs[key] = probs.get(key, 0.0) + p
    return {k: float(np.log(v)) for k, v in probs.items()}


def _random_log_probs(T, B, C, seed, sharp=2.0):
    g = torch.Generator().manual_seed(seed)
    return F.log_softmax(sharp * torch.randn(T, B, C, generator=g, dtype=torch.float64), 2)


def test_greedy_equals_reference():
    lp = _random_log_probs(20, 6, 5, 0, sharp=3.0)
    lengths = torch.tensor([20, 0, 1, 7, 13, 20])
    got = ctc_greedy_decode(lp, lengths)
    for b in range(6):
        best = lp[: lengths[b], b].argmax(1).tolist()
        assert got[b] == list(_collapse(best))
    # a hand case: "a a _ a b b _" -> [a, a, b]
    one_hot = torch.full((7, 1, 3), -10.0)
    for t, c in enumerate([1, 1, 0, 1, 2, 2, 0]):
        one_hot[t, 0, c] = 0.0
    assert ctc_greedy_decode(one_hot) == [[1, 1, 2]]
    assert ctc_greedy_decode(one_hot, blank=2) == [[1, 0, 1, 0]]


@pytest.mark.parametrize("T,C,seed", [(1, 3, 0), (3, 2, 1), (4, 3, 2), (5, 3, 3), (6, 2, 4)])
def test_beam_search_equals_brute_force(T, C, seed):
    lp = _random_log_probs(T, 2, C, seed)
    results = ctc_beam_search(lp, beam=10_000, top=5)  # beam >= every prefix: exact
    for b in range(2):
        exact = sorted(_brute_force(lp[:, b].numpy()).items(), key=lambda kv: -kv[1])
        got = results[b]
        assert len(got) == min(5, len(exact))
        for (labels, score), (ref_labels, ref_score) in zip(got, exact):
            assert score == pytest.approx(ref_score, abs=1e-9)
            if abs(score - ref_score) < 1e-12:
                assert tuple(labels) == ref_labels
        # the scores are log p(l | x): minus torch's CTC loss of that labelling
        for labels, score in got:
            nll = F.ctc_loss(lp[:, b : b + 1], torch.tensor([labels]).long(), [T], [len(labels)],
                             reduction="sum")  # fmt: skip
            assert score == pytest.approx(-float(nll), abs=1e-9)


def test_beam_search_beats_greedy_and_respects_lengths():
    # Greedy picks the blank path (0.4 * 0.4 = 0.16 for "") but "1" has the larger total
    # probability: 0.3*0.3 + 0.3*0.4 + 0.4*0.3 = 0.33 (+ the 2-path ... ) > 0.16.
    p = torch.tensor([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3]], dtype=torch.float64)
    lp = p.log()[:, None]
    assert ctc_greedy_decode(lp) == [[]]
    best = ctc_beam_search(lp, beam=4)[0][0]
    exact = max(_brute_force(lp[:, 0].numpy()).items(), key=lambda kv: kv[1])
    assert tuple(best[0]) == exact[0] and best[0] != []
    # frames past a sequence's length are ignored
    lp2 = _random_log_probs(6, 2, 3, 9)
    full = ctc_beam_search(lp2[:4], beam=50, top=3)
    cut = ctc_beam_search(lp2, lengths=torch.tensor([4, 4]), beam=50, top=3)
    assert full == cut


def test_beam_search_small_beam_matches_greedy_on_peaked_outputs():
    lp = _random_log_probs(30, 4, 6, 5, sharp=12.0)  # near one-hot frames
    beams = ctc_beam_search(lp, beam=3)
    assert [b[0][0] for b in beams] == ctc_greedy_decode(lp)


def test_decode_errors():
    with pytest.raises(DataError, match="T, B, C"):
        ctc_greedy_decode(torch.zeros(3, 4))
    with pytest.raises(DataError, match="lengths"):
        ctc_greedy_decode(torch.zeros(3, 2, 4), torch.tensor([4, 1]))
    with pytest.raises(ConfigError, match="beam"):
        ctc_beam_search(torch.zeros(3, 2, 4), beam=2, top=3)
