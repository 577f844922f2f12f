"""Random policies checked for how OFTEN they draw, not only for what: every configured
probability (a transform's ``p``, AutoAugment's sub-policy choice and per-step probabilities,
RandAugment/TrivialAugment op and bin choice, the random magnitude sign, MixUp/CutMix's
prob and switch, CopyPaste's object and flip probabilities, a multi-sample transform's ``p``)
against its binomial/multinomial law. Fixed seeds, so each test is deterministic; the bounds
(|z| < 4.5, chi-square p > 1e-5) would flag a correct sampler about once in 10^5 seeds,
while a swapped comparison or a dropped term moves the counts by tens of sigmas."""

import numpy as np
import pytest
from scipy import stats

from cvcraft.structures import Sample
from cvcraft.transforms import AutoAugment, RandAugment, TrivialAugmentWide
from cvcraft.transforms import policies as PO
from cvcraft.transforms.copy_paste import CopyPaste
from cvcraft.transforms.geometric import HorizontalFlip
from cvcraft.transforms.mix import MixupCutmix
from cvcraft.transforms.mosaic import DetectionMixUp, Mosaic

Z_MAX = 4.5
P_MIN = 1e-5
SAMPLE = Sample(np.zeros((33, 47, 3), np.uint8))


def assert_binomial(k: int, n: int, p: float, what: str = "") -> None:
    """k successes of n trials at probability p; p in {0, 1} must be exact."""
    if p in (0.0, 1.0):
        assert k == n * p, (what, k, n, p)
        return
    z = (k - n * p) / np.sqrt(n * p * (1 - p))
    assert abs(z) < Z_MAX, f"{what}: {k}/{n} = {k / n:.4f}, expected {p} (z = {z:.1f})"


def assert_uniform(counts: np.ndarray, what: str = "") -> None:
    counts = np.asarray(counts)
    p = stats.chisquare(counts).pvalue
    assert p > P_MIN, f"{what}: counts {counts.tolist()} not uniform (chi-square p = {p:.2g})"


# --- a transform's p ----------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.3, 0.75])
def test_transform_p_is_the_run_frequency(p):
    t, rng, n = HorizontalFlip(p=p), np.random.default_rng(1), 4000
    ran = sum(not t.forward(SAMPLE, rng)[1].get("_skipped") for _ in range(n))
    assert_binomial(ran, n, p, f"HorizontalFlip(p={p})")


@pytest.mark.parametrize("cls", [Mosaic, DetectionMixUp])
@pytest.mark.parametrize("p", [0.2, 0.7])
def test_multi_sample_p_is_the_run_frequency(cls, p, monkeypatch):
    """Mosaic / detection MixUp probability: the gate in MultiSampleTransform.__call__ (the
    op itself is replaced by a marker, so only the draw is measured)."""
    t = cls(64, p=p) if cls is Mosaic else cls(p=p)
    monkeypatch.setattr(cls, "apply", lambda self, samples, params: "ran")
    samples = [SAMPLE] * t.n_inputs
    rng, n = np.random.default_rng(2), 3000
    ran = sum(t(samples, rng) == "ran" for _ in range(n))
    assert_binomial(ran, n, p, f"{cls.__name__}(p={p})")


# --- AutoAugment ---------------------------------------------------------------------------


def _draw(t, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [t.make_params(SAMPLE, rng) for _ in range(n)]


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_autoaugment_sub_policy_and_step_frequencies(policy):
    """Sub-policy index uniform over the 25; within a sub-policy each step runs with its
    table probability (steps told apart by name where the two differ; for two steps of the
    same op, the number of applied steps has mean p1 + p2); each applied op at its exact
    table bin with a fair random sign for signed ops."""
    table = PO.AUTOAUGMENT_POLICIES[policy]
    draws = _draw(AutoAugment(policy), 12_500, seed=3)
    idx = np.array([d["policy_index"] for d in draws])
    assert_uniform(np.bincount(idx, minlength=len(table)), f"{policy} sub-policy index")
    neg = signed = 0
    for i, sub in enumerate(table):
        mine = [d["ops"] for d, j in zip(draws, idx) if j == i]
        (n1, p1, l1), (n2, p2, l2) = sub
        if n1 != n2:
            for name, prob in ((n1, p1), (n2, p2)):
                k = sum(any(op == name for op, _ in ops) for ops in mine)
                assert_binomial(k, len(mine), prob, f"{policy}[{i}] {name}")
        else:  # both steps the same op: the count of applied steps is Binomial-sum
            count = np.array([len(ops) for ops in mine])
            var = p1 * (1 - p1) + p2 * (1 - p2)
            z = (count.sum() - len(mine) * (p1 + p2)) / np.sqrt(len(mine) * var) if var else 0
            assert abs(z) < Z_MAX and (var or count.sum() == len(mine) * (p1 + p2))
        levels = {n1: {l1}, n2: {l2}} if n1 != n2 else {n1: {l1, l2}}
        for ops in mine:
            for name, m in ops:
                bins = PO.magnitude_bins(PO.AUTOAUGMENT_SPACE, name, 10, *SAMPLE.image.shape[:2])
                if bins is None:
                    assert m == 0.0
                    continue
                assert abs(m) in {float(bins[lv]) for lv in levels[name]}, (policy, i, name, m)
                if PO.AUTOAUGMENT_SPACE[name][1] and m != 0:
                    signed += 1
                    neg += m < 0
                else:
                    assert m >= 0
    assert_binomial(neg, signed, 0.5, f"{policy} magnitude sign")


# --- RandAugment / TrivialAugment ------------------------------------------------------------


def _level(space, name: str, m: float, num_bins: int) -> int | None:
    """The bin index whose value is |m| (None for parameter-free ops or ambiguous bins)."""
    bins = PO.magnitude_bins(space, name, num_bins, *SAMPLE.image.shape[:2])
    if bins is None:
        return None
    hit = np.flatnonzero(bins == np.float32(abs(m)))
    return int(hit[0]) if len(hit) == 1 else None


def test_randaugment_op_choice_sign_and_fixed_level():
    names = list(PO.RANDAUGMENT_SPACE)
    draws = _draw(RandAugment(num_ops=2, magnitude=9), 5000, seed=4)
    ops = [op for d in draws for op in d["ops"]]
    assert all(len(d["ops"]) == 2 for d in draws)
    counts = np.bincount([names.index(n) for n, _ in ops], minlength=len(names))
    assert_uniform(counts, "RandAugment op choice")
    signed = [m for n, m in ops if PO.RANDAUGMENT_SPACE[n][1]]
    assert_binomial(sum(m < 0 for m in signed), len(signed), 0.5, "RandAugment sign")
    for n, m in ops:
        lv = _level(PO.RANDAUGMENT_SPACE, n, m, 31)
        assert lv in (None, 9), (n, m)


def test_randaugment_random_magnitude_level_is_uniform_up_to_magnitude():
    draws = _draw(RandAugment(num_ops=2, magnitude=9, random_magnitude=True), 6000, seed=5)
    levels = [
        _level(PO.RANDAUGMENT_SPACE, n, m, 31)
        for d in draws
        for n, m in d["ops"]
        if n in ("Rotate", "ShearX", "Brightness")  # bins strictly increasing: level known
    ]
    assert None not in levels and max(levels) == 9
    assert_uniform(np.bincount(levels, minlength=10), "RandAugment random level 0..9")
    signed = [m for d in draws for n, m in d["ops"] if PO.RANDAUGMENT_SPACE[n][1] and m != 0]
    assert_binomial(sum(m < 0 for m in signed), len(signed), 0.5, "random-magnitude sign")


def test_trivialaugment_op_and_bin_uniform():
    names = list(PO.TRIVIALAUGMENT_SPACE)
    draws = _draw(TrivialAugmentWide(), 8000, seed=6)
    assert all(len(d["ops"]) == 1 for d in draws)
    ops = [d["ops"][0] for d in draws]
    assert_uniform(np.bincount([names.index(n) for n, _ in ops]), "TrivialAugment op")
    # Bin index recovered from every op whose 31 bins are distinct values (9 of the 14).
    levels = [_level(PO.TRIVIALAUGMENT_SPACE, n, m, 31) for n, m in ops]
    levels = [lv for lv in levels if lv is not None]
    assert len(levels) > 0.55 * len(ops) and min(levels) == 0 and max(levels) == 30
    assert_uniform(np.bincount(levels, minlength=31), "TrivialAugment bin")


# --- batch mixing and copy-paste -------------------------------------------------------------


@pytest.mark.parametrize("prob, switch", [(0.3, 0.2), (0.8, 0.7)])
def test_mixup_cutmix_prob_and_switch_frequencies(prob, switch):
    """A batch is mixed with ``prob``; a mixed batch is CutMix with ``switch_prob`` (an
    asymmetric switch, so a swapped comparison shows; 0.5 would hide it)."""
    mix = MixupCutmix(10, mixup_alpha=1.0, cutmix_alpha=1.0, prob=prob, switch_prob=switch)
    rng, n = np.random.default_rng(7), 4000
    modes = [mix.make_params(4, 16, 16, rng).mode for _ in range(n)]
    mixed = sum(m != "none" for m in modes)
    assert_binomial(mixed, n, prob, "mix prob")
    assert_binomial(sum(m == "cutmix" for m in modes), mixed, switch, "cutmix switch")


@pytest.mark.parametrize("object_prob, flip", [(0.3, 0.2), (0.8, 0.9)])
def test_copy_paste_object_and_flip_frequencies(object_prob, flip):
    n_obj = 5
    src = Sample(
        np.zeros((16, 16, 3), np.uint8),
        boxes=np.tile([[1.0, 1, 5, 5]], (n_obj, 1)),
        box_labels=np.zeros(n_obj, np.int64),
        masks=np.zeros((n_obj, 16, 16), bool),
    )
    t, rng, n = CopyPaste(object_prob=object_prob, flip=flip), np.random.default_rng(8), 2000
    params = [t.make_params([SAMPLE, src], rng) for _ in range(n)]
    chosen = sum(len(p["chosen"]) for p in params)
    assert_binomial(chosen, n * n_obj, object_prob, "CopyPaste object_prob")
    assert_binomial(sum(p["flip"] for p in params), n, flip, "CopyPaste flip")
