"""The multi-sample framework: transforms that combine several Samples into one (Mosaic,
MixUp, Copy-Paste) and how an item runs through them.

A multi-sample transform takes ``n_inputs`` Samples and returns one. The dataset draws the
``n_inputs - 1`` partner indices from the *same* per-item generator it passes to the
transform (``run_multi_sample``), so the result depends only on (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError
from cvcraft.registry import Registry
from cvcraft.structures import Sample

Params = dict[str, Any]

# Transforms taking several Samples; build_multi_sample({"name": "mosaic", ...}) finds them.
MULTI_SAMPLE: Registry = Registry("multi-sample transform")


class MultiSampleTransform:
    """Base of transforms over ``n_inputs`` Samples: ``make_params`` then ``apply``.

    ``p`` is the probability the transform runs; when it does not, the first sample is
    returned unchanged (the partners are still drawn, so the item's stream does not shift).
    """

    n_inputs: int = 2

    def __init__(self, p: float = 1.0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)

    def make_params(self, samples: Sequence[Sample], rng: np.random.Generator) -> Params:
        return {}

    def apply(self, samples: Sequence[Sample], params: Params) -> Sample:
        raise NotImplementedError

    def __call__(self, samples: Sequence[Sample], rng: np.random.Generator) -> Sample:
        """Combine ``samples`` (exactly ``n_inputs`` of them; the first is the anchor)."""
        if len(samples) != self.n_inputs:
            raise DataError(
                f"{type(self).__name__} needs {self.n_inputs} samples, got {len(samples)}"
            )
        if self.p < 1.0 and rng.random() >= self.p:
            return samples[0]
        return self.apply(samples, self.make_params(samples, rng))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def run_multi_sample(
    transform: MultiSampleTransform,
    get_sample: Callable[[int], Sample],
    index: int,
    n_items: int,
    rng: np.random.Generator,
) -> Sample:
    """Item ``index`` through a multi-sample transform: partners drawn uniformly from
    ``rng`` (with replacement, like YOLOv5), then the transform with the same ``rng``."""
    return run_pipeline([transform], lambda s, _: s, get_sample, index, n_items, rng)


def run_pipeline(
    multi: Sequence[MultiSampleTransform],
    per_item: Callable[[Sample, np.random.Generator], Sample],
    get_sample: Callable[[int], Sample],
    index: int,
    n_items: int,
    rng: np.random.Generator,
) -> Sample:
    """Item ``index`` through ``split_pipeline``'s parts: each multi-sample step pairs the
    running result with fresh partners from ``rng``, then the per-item transforms."""
    sample = get_sample(int(index))
    for t in multi:
        partners = rng.integers(0, n_items, size=t.n_inputs - 1)
        sample = t([sample, *(get_sample(int(j)) for j in partners)], rng)
    return per_item(sample, rng)


def build_multi_sample(spec: str | dict[str, Any]) -> MultiSampleTransform:
    """A multi-sample transform from ``"mosaic"`` or ``{"name": "mosaic", "size": 640}``."""
    kwargs = {"name": spec} if isinstance(spec, str) else dict(spec)
    cls = MULTI_SAMPLE.get(kwargs.pop("name"))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"cannot build {cls.__name__}: {e}") from None
