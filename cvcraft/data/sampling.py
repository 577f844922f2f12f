"""Class-imbalance tools: label report, class weights, weighted / class-balanced / resampling
samplers, and a dataset that augments repeated items differently.

Samplers here are deterministic given (seed, epoch), like ``EpochSampler``, and yield
``(epoch, index, repeat)`` keys: ``repeat`` counts earlier occurrences of ``index`` in the
same epoch. ``RepeatAwareDataset`` seeds an item's augmentation from
``[seed, epoch, index, repeat]`` (``[seed, epoch, index]`` when repeat = 0, so an unrepeated
item is exactly what ``ClassifyDataset`` gives). That is the "data generation" half of
minority oversampling: the k-th copy of a rare image in an epoch is a *different* augmented
view, not the same tensor k times, which with per-item seeding it otherwise would be.

Weights (``class_weights``): ``inverse`` w_c = N / (K n_c) (scikit-learn's "balanced": every
class contributes equally, and the mean weight over the samples is 1); ``sqrt`` w_c ∝
1 / sqrt(n_c), scaled to the same per-sample mean of 1 (a milder correction, as in Mahajan
et al. 2018). Classes with no items get weight 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.loader import EpochSampler
from cvcraft.errors import ConfigError, DataError

WEIGHT_MODES = ("none", "inverse", "sqrt")
SAMPLERS = ("random", "weighted", "sqrt", "balanced", "oversample", "undersample")

Key = tuple[int, int, int]


def _labels(labels: Any, num_classes: int | None = None) -> tuple[np.ndarray, int]:
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise DataError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    y = y.astype(np.int64)
    k = int(num_classes) if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise DataError(f"labels span [{y.min()}, {y.max()}] but there are {k} classes")
    return y, k


@dataclass
class LabelDistribution:
    """Items per class: ``counts`` (K,), ``fractions`` (K,), and ``imbalance`` = largest /
    smallest non-empty class count. ``str()`` is a table with bars, for a person to read."""

    classes: list[str]
    counts: np.ndarray
    fractions: np.ndarray
    imbalance: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"counts": {class: n}, "fractions": {...}, "imbalance": r, ...}``."""
        return {
            "counts": {c: int(n) for c, n in zip(self.classes, self.counts)},
            "fractions": {c: float(f) for c, f in zip(self.classes, self.fractions)},
            "imbalance": self.imbalance,
            "total": int(self.counts.sum()),
            "empty_classes": [c for c, n in zip(self.classes, self.counts) if n == 0],
        }

    def __str__(self) -> str:
        width = max([5, *(len(c) for c in self.classes)])
        top = max(int(self.counts.max()) if len(self.counts) else 0, 1)
        lines = [f"{'class':<{width}} {'count':>8} {'share':>7}"]
        for c, n, f in zip(self.classes, self.counts, self.fractions):
            lines.append(f"{c:<{width}} {int(n):>8} {f:>7.2%} " + "#" * round(30 * n / top))
        lines.append(
            f"{len(self.classes)} classes, {int(self.counts.sum())} items, "
            f"imbalance (max/min) {self.imbalance:.2f}"
        )
        empty = [c for c, n in zip(self.classes, self.counts) if n == 0]
        if empty:
            lines.append(f"classes with no items: {', '.join(empty)}")
        return "\n".join(lines)


def label_distribution(labels: Any, classes: Sequence[str] | int) -> LabelDistribution:
    """Count labels per class -> ``LabelDistribution`` (``print()`` it for the report)."""
    names = [str(i) for i in range(classes)] if isinstance(classes, int) else list(classes)
    y, k = _labels(labels, len(names))
    counts = np.bincount(y, minlength=k).astype(np.int64)
    fractions = counts / max(int(counts.sum()), 1)
    nonzero = counts[counts > 0]
    imbalance = float(nonzero.max() / nonzero.min()) if nonzero.size else 0.0
    return LabelDistribution(names, counts, fractions, imbalance)


def class_weights(labels: Any, mode: str = "inverse", num_classes: int | None = None) -> np.ndarray:
    """Per-class weights, float64 (K,), from label counts (formulas in the module doc)."""
    if mode not in WEIGHT_MODES:
        raise ConfigError(f"class weight mode {mode!r}: use one of {', '.join(WEIGHT_MODES)}")
    y, k = _labels(labels, num_classes)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    present = counts > 0
    if mode == "none":
        return np.where(present, 1.0, 0.0) if y.size else np.ones(k)
    raw = np.zeros(k)
    power = 1.0 if mode == "inverse" else 0.5
    raw[present] = counts[present] ** -power
    # scale so the mean weight over the samples is 1: sum_c n_c w_c = N
    return raw * (len(y) / max(float((raw * counts).sum()), 1e-12))


def sample_weights(
    labels: Any, mode: str = "inverse", num_classes: int | None = None
) -> np.ndarray:
    """Each item's weight = its class's weight, float64 (N,)."""
    y, _ = _labels(labels, num_classes)
    return class_weights(y, mode, num_classes)[y]


def repeat_counts(indices: np.ndarray) -> np.ndarray:
    """How many times each position's index occurred before it: [3, 5, 3, 3] -> [0, 0, 1, 2]."""
    idx = np.asarray(indices, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first position of each run
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(s)]))
    out = np.empty_like(idx)
    out[order] = np.arange(len(s)) - run_start
    return out


class _KeySampler(EpochSampler):
    """An EpochSampler whose epoch draws a (possibly repeating) index list, yielding
    ``(epoch, index, repeat)``; subclasses implement ``draw(rng) -> int64 (M,)``."""

    def __init__(
        self, n: int, num_samples: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(n, True, seed, num_replicas=num_replicas, rank=rank)
        self.total = int(num_samples)
        self.num_samples = -(-self.total // num_replicas) if self.total else 0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def keys(self) -> list[Key]:
        """This rank's keys for the current epoch."""
        idx = np.asarray(self.draw(np.random.default_rng([self.seed, self.epoch, 2])), np.int64)
        rep = repeat_counts(idx)
        total = self.num_samples * self.num_replicas
        if total > len(idx):  # pad by wrapping (DistributedSampler style)
            idx, rep = np.resize(idx, total), np.resize(rep, total)
        sl = slice(self.rank, total, self.num_replicas)
        return [(self.epoch, int(i), int(r)) for i, r in zip(idx[sl], rep[sl])]

    def indices(self) -> np.ndarray:
        return np.array([k[1] for k in self.keys()], dtype=np.int64)

    def __iter__(self) -> Iterator[Key]:  # type: ignore[override]
        return iter(self.keys())


class WeightedEpochSampler(_KeySampler):
    """Draw ``num_samples`` (default N) items per epoch with probability ∝ ``weights``, with
    replacement (torch's ``WeightedRandomSampler``, but seeded by (seed, epoch))."""

    def __init__(
        self,
        weights: Any,
        num_samples: int | None = None,
        seed: int = 0,
        *,
        replacement: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ConfigError("sampler weights must be finite, >= 0, with a positive sum")
        if not replacement and num_samples is not None and num_samples > (w > 0).sum():
            raise ConfigError(
                f"cannot draw {num_samples} items without replacement from {(w > 0).sum()} "
                "with non-zero weight"
            )
        self.p, self.replacement = w / w.sum(), replacement
        super().__init__(len(w), len(w) if num_samples is None else num_samples, seed,
                         num_replicas=num_replicas, rank=rank)  # fmt: skip

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.n, size=self.total, replace=self.replacement, p=self.p)


def resample_indices(
    labels: Any,
    rng: np.random.Generator | int = 0,
    *,
    ratios: Mapping[int, float] | Sequence[float] | None = None,
    target: str | int | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Over-/under-sample: an index list (int64, grouped by class) with t_c items of class c.

    ``ratios``: t_c = round(r_c * n_c) (> 1 oversamples, < 1 undersamples; a mapping leaves
    unlisted classes at 1). ``target``: ``"max"`` (every class up to the largest), ``"min"``
    (down to the smallest non-empty), ``"mean"``, or an int count. Oversampling takes every
    item floor(t_c / n_c) times plus a random subset for the rest; undersampling a random
    subset — so every item appears as evenly as possible.
    """
    if (ratios is None) == (target is None):
        raise ConfigError("resample_indices: give exactly one of ratios= or target=")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    y, k = _labels(labels, num_classes)
    counts = np.bincount(y, minlength=k)
    if ratios is not None:
        r = np.ones(k)
        if isinstance(ratios, Mapping):
            for c, v in ratios.items():
                r[int(c)] = float(v)
        else:
            r = np.asarray(ratios, dtype=np.float64)
            if r.shape != (k,):
                raise ConfigError(
                    f"resample ratios: need {k} values (one per class), got {r.shape}"
                )
        if (r < 0).any():
            raise ConfigError(f"resample ratios must be >= 0, got {r.tolist()}")
        t = np.round(r * counts).astype(np.int64)
    else:
        nonzero = counts[counts > 0]
        named = {"max": nonzero.max(), "min": nonzero.min(), "mean": round(nonzero.mean())}
        if isinstance(target, str) and target not in named:
            raise ConfigError(f"resample target {target!r}: use max, min, mean or a count")
        t = np.where(counts > 0, int(named[target] if isinstance(target, str) else target), 0)
    out = []
    for c in range(k):  # one vectorized draw per class
        members = np.flatnonzero(y == c)
        if t[c] == 0 or len(members) == 0:
            continue
        whole, rest = divmod(int(t[c]), len(members))
        out += [np.tile(members, whole), rng.choice(members, rest, replace=False)]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


class ResampledEpochSampler(_KeySampler):
    """Each epoch, a fresh ``resample_indices(labels, ratios= | target=)`` list, shuffled:
    undersampling sees different majority items every epoch, oversampled copies are
    different augmented views (``repeat`` > 0)."""

    def __init__(
        self,
        labels: Any,
        *,
        ratios: Mapping[int, float] | Sequence[float] | None = None,
        target: str | int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.labels, _ = _labels(labels)
        self.ratios, self.target = ratios, target
        size = len(resample_indices(self.labels, 0, ratios=ratios, target=target))
        super().__init__(len(self.labels), size, seed, num_replicas=num_replicas, rank=rank)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        idx = resample_indices(self.labels, rng, ratios=self.ratios, target=self.target)
        return rng.permutation(idx)


class ClassBalancedBatchSampler:
    """Batches with (nearly) equal items per class: each of the K classes gets
    batch_size // K slots, the remaining slots go to distinct random classes (with K >
    batch_size, batch_size distinct random classes get one each). Within a class, items
    come from successive fresh permutations, so rare items repeat only after all of their
    class was used, and each copy is a new view (``repeat`` = permutation cycle).

    Yields lists of ``(epoch, index, repeat)``; ``num_batches`` defaults to N // batch_size.
    Deterministic in (seed, epoch); with ``num_replicas`` > 1 rank r takes batches r, r+R, ...
    """

    yields_batches = True

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        seed: int = 0,
        *,
        num_batches: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.labels, self.k = _labels(labels)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.present = np.flatnonzero(np.bincount(self.labels, minlength=self.k) > 0)
        if not len(self.present):
            raise DataError("ClassBalancedBatchSampler: no labels")
        self.batch_size, self.seed = int(batch_size), seed
        total = len(self.labels) // batch_size if num_batches is None else int(num_batches)
        self.total_batches = total
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next iteration uses."""
        self.epoch = int(epoch)

    def batches(self) -> list[list[Key]]:
        """All batches of the current epoch (before the rank split)."""
        rng = np.random.default_rng([self.seed, self.epoch, 3])
        kp, b, nb = len(self.present), self.batch_size, self.total_batches
        base, rem = divmod(b, kp)
        # slot classes, (nb, b): base copies of every class + rem distinct random ones
        extra = np.argsort(rng.random((nb, kp)), axis=1)[:, :rem]
        slots = np.concatenate([np.tile(np.repeat(np.arange(kp), base), (nb, 1)), extra], 1)
        slots = self.present[slots]
        idx = np.empty(slots.shape, np.int64)
        rep = np.empty(slots.shape, np.int64)
        flat_cls = slots.ravel()
        for c in self.present:  # one draw per class, not per item
            where = np.flatnonzero(flat_cls == c)
            members = np.flatnonzero(self.labels == c)
            cycles = -(-len(where) // len(members))
            stream = np.concatenate([rng.permutation(members) for _ in range(cycles)])
            idx.flat[where] = stream[: len(where)]
            rep.flat[where] = np.arange(len(where)) // len(members)
        order = np.argsort(rng.random(slots.shape), axis=1)  # shuffle within each batch
        idx, rep = np.take_along_axis(idx, order, 1), np.take_along_axis(rep, order, 1)
        return [[(self.epoch, int(i), int(r)) for i, r in zip(ri, rr)] for ri, rr in zip(idx, rep)]

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self.total_batches, self.num_replicas))


def build_sampler(
    kind: str, labels: Any, seed: int = 0, *, batch_size: int = 1, **kwargs: Any
) -> Any:
    """The sampler a config names: ``random`` -> None (the loader's default EpochSampler),
    ``weighted`` / ``sqrt`` -> WeightedEpochSampler with inverse / sqrt-inverse class
    weights, ``balanced`` -> ClassBalancedBatchSampler, ``oversample`` / ``undersample`` ->
    ResampledEpochSampler to the largest / smallest class. ``kwargs`` go to the sampler."""
    if kind == "random":
        return None
    if kind in ("weighted", "sqrt"):
        w = sample_weights(labels, "inverse" if kind == "weighted" else "sqrt")
        return WeightedEpochSampler(w, seed=seed, **kwargs)
    if kind == "balanced":
        return ClassBalancedBatchSampler(labels, batch_size, seed, **kwargs)
    if kind in ("oversample", "undersample"):
        target = "max" if kind == "oversample" else "min"
        return ResampledEpochSampler(labels, target=target, seed=seed, **kwargs)
    raise ConfigError(f"sampler={kind!r}: use one of {', '.join(SAMPLERS)}")


# ``(epoch, index, repeat)`` keys are understood by the one dataset (``AugmentedDataset``):
# a repeat > 0 seeds the augmentation with ``[seed, epoch, index, repeat]`` (module doc).
RepeatAwareDataset = AugmentedDataset


def weights_from_spec(
    spec: Sequence[Any], labels: Callable[[], Any], num_classes: int
) -> list[float] | None:
    """The loss weights ``class_weights=`` asks for, the same way in every task: None for
    [] or [none]; [inverse] / [sqrt] from the counts of ``labels()`` (image labels, or mask
    pixels in segmentation; called only then); numbers as given (one per class)."""
    if not spec or (len(spec) == 1 and spec[0] == "none"):
        return None
    if len(spec) == 1 and isinstance(spec[0], str):
        return class_weights(labels(), spec[0], num_classes).astype(np.float32).tolist()
    if len(spec) != num_classes:
        raise ConfigError(
            f"class_weights has {len(spec)} values but the data has {num_classes} classes"
        )
    return [float(w) for w in spec]
