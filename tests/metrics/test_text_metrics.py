"""Edit distance vs a plain Levenshtein DP (random strings, empty and equal ones), CER vs
torchmetrics' CharErrorRate, sequence accuracy, and the evaluator's merge."""

from __future__ import annotations

import numpy as np
import pytest
from torchmetrics.text import CharErrorRate

from cvcraft.errors import DataError
from cvcraft.metrics.text import TextEvaluator, char_error_rate, edit_distance, sequence_accuracy


def _dp(a, b) -> int:
    """The textbook full-table Levenshtein DP."""
    D = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        D[i][0] = i
    for j in range(len(b) + 1):
        D[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            D[i][j] = min(
                D[i - 1][j] + 1, D[i][j - 1] + 1, D[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
    return D[-1][-1]


def _random_strings(n, seed, alphabet="0123", max_len=9):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), rng.integers(0, max_len + 1))) for _ in range(n)]


def test_edit_distance_equals_reference_dp():
    a, b = _random_strings(300, 0), _random_strings(300, 1)
    for x, y in zip(a, b):
        assert edit_distance(x, y) == _dp(x, y), (x, y)
    assert edit_distance("", "") == 0
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([1, 2, 3], [1, 3]) == 1  # label lists too
    assert edit_distance("abc", "abc") == 0


def test_cer_equals_torchmetrics_and_accuracy():
    preds, refs = _random_strings(200, 2), _random_strings(200, 3, max_len=7)
    refs = [r or "0" for r in refs]  # torchmetrics divides by reference characters
    ours = char_error_rate(preds, refs)
    assert ours == pytest.approx(float(CharErrorRate()(preds, refs)), abs=1e-6)
    preds[:50] = refs[:50]
    same = sum(p == r for p, r in zip(preds, refs))
    assert sequence_accuracy(preds, refs) == same / 200
    ev, half = TextEvaluator(), TextEvaluator()
    ev.update(None, {"texts": preds[:120], "targets": refs[:120]})
    half.update(None, {"texts": preds[120:], "targets": refs[120:]})
    ev.merge(half.state_dict())
    m = ev.compute()
    assert m["seq_acc"] == same / 200
    assert m["cer"] == pytest.approx(char_error_rate(preds, refs))


def test_errors():
    with pytest.raises(DataError, match="pair"):
        char_error_rate(["a"], ["a", "b"])
    with pytest.raises(DataError, match="empty"):
        char_error_rate(["a"], [""])
    with pytest.raises(DataError, match="undefined"):
        sequence_accuracy([], [])
