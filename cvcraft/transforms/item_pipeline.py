"""What one dataset item goes through: the per-item pipelines ``AugmentedDataset`` runs.

An item pipeline is called as ``pipeline(get_sample, index, n_items, rng, epoch)``:
``get_sample(i)`` reads item ``i`` of the source (partners included), ``rng`` is the item's
generator (``default_rng([seed, epoch, index])``) and ``epoch`` lets a step switch off late
in training (Mosaic's ``close_mosaic``). Two kinds cover every task:

- ``ItemPipeline``: multi-sample steps (each with its probability; partners drawn from
  ``rng``), then the per-item transform — classification, segmentation and a detection
  ``augment:`` list.
- ``DetectionPipeline``: the ultralytics knob recipe (Mosaic or letterbox, one affine warp,
  MixUp of two such results, HSV and flips).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvcraft.structures import Sample
from cvcraft.transforms.base import Compose
from cvcraft.transforms.color import HSVJitter
from cvcraft.transforms.geometric import HorizontalFlip, RandomAffine, VerticalFlip
from cvcraft.transforms.letterbox import Letterbox
from cvcraft.transforms.mosaic import DetectionMixUp, Mosaic
from cvcraft.transforms.multi_sample import MultiSampleTransform

GetSample = Callable[[int], Sample]
PerItem = Callable[[Sample, np.random.Generator], Sample]


class ItemPipeline:
    """Multi-sample steps, then ``per_item``.

    ``multi`` is a list of ``(transform, p)``. With ``draw=True`` every step makes one
    ``rng.random() < p`` draw (always made, so the stream does not depend on earlier
    outcomes); with ``draw=False`` steps always run (their own ``p`` applies inside).
    Steps run only in epochs before ``until``. ``prepare`` is applied to every sample fed
    to a multi-sample step (segmentation turns its mask into per-class instances there) and
    ``cleanup`` to the result after the steps, when any ran.
    """

    def __init__(
        self,
        per_item: PerItem | None = None,
        multi: Sequence[tuple[MultiSampleTransform, float]] = (),
        *,
        draw: bool = True,
        until: int | None = None,
        prepare: Callable[[Sample], Sample] | None = None,
        cleanup: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.per_item = per_item
        self.multi = [(t, float(p)) for t, p in multi if p > 0]
        self.draw, self.until = draw, until
        self.prepare, self.cleanup = prepare, cleanup

    def multi_on(self, epoch: int) -> bool:
        return bool(self.multi) and (self.until is None or epoch < self.until)

    def __call__(
        self, get: GetSample, index: int, n_items: int, rng: np.random.Generator, epoch: int
    ) -> Sample:
        sample = get(index)
        if self.multi_on(epoch):
            prep = self.prepare or (lambda s: s)
            for t, p in self.multi:
                if self.draw and not rng.random() < p:
                    continue
                partners = rng.integers(0, n_items, size=t.n_inputs - 1)
                # the anchor is this item as it stands; partners are read fresh
                sample = t([prep(sample), *(prep(get(int(j))) for j in partners)], rng)
            if self.cleanup is not None:
                sample = self.cleanup(sample)
        if self.per_item is not None:
            sample = self.per_item(sample, rng)
        return sample


@dataclass
class DetectAugment:
    """The detection training knobs (ultralytics names and meanings)."""

    mosaic: float = 1.0
    mixup: float = 0.0
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    fliplr: float = 0.5
    flipud: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4


class DetectionPipeline:
    """YOLOv5/ultralytics training recipe from ``DetectAugment``: Mosaic (probability
    ``mosaic``, epochs before ``until``) or a letterbox to ``imgsz``, then one affine warp;
    MixUp (probability ``mixup``) blends in a second such result; then HSV and flips."""

    def __init__(self, imgsz: int, aug: DetectAugment, fill: int, until: int | None) -> None:
        self.aug, self.until = aug, until
        self.letterbox = Letterbox(int(imgsz), fill=fill)
        self.mosaic = Mosaic(int(imgsz), 4, fill) if aug.mosaic > 0 else None
        self.mixup = DetectionMixUp(fill=fill) if aug.mixup > 0 else None
        geo = dict(
            degrees=aug.degrees, translate=aug.translate, shear=aug.shear,
            perspective=aug.perspective,
        )  # fmt: skip
        self.affine = RandomAffine(**geo, scale=min(aug.scale, 0.99), fill=fill, min_area=4.0)
        self.photometric = Compose(
            [
                HSVJitter(aug.hsv_h, aug.hsv_s, aug.hsv_v),
                HorizontalFlip(p=aug.fliplr),
                VerticalFlip(p=aug.flipud),
            ]
        )

    def mosaic_on(self, epoch: int) -> bool:
        """Whether Mosaic may run in ``epoch`` (off from ``until`` on)."""
        return self.mosaic is not None and (self.until is None or epoch < self.until)

    def _pre(
        self, get: GetSample, index: int, n: int, rng: np.random.Generator, epoch: int
    ) -> Sample:
        """Mosaic-or-letterbox, then the affine warp (the part MixUp repeats)."""
        if self.mosaic_on(epoch) and rng.random() < self.aug.mosaic:
            others = rng.integers(0, n, self.mosaic.n_inputs - 1)  # type: ignore[union-attr]
            s = self.mosaic([get(int(i)) for i in (index, *others)], rng)  # type: ignore[misc]
        else:
            s = self.letterbox(get(index), rng)
        return self.affine(s, rng)

    def __call__(
        self, get: GetSample, index: int, n_items: int, rng: np.random.Generator, epoch: int
    ) -> Sample:
        s = self._pre(get, index, n_items, rng, epoch)
        if self.mixup is not None and rng.random() < self.aug.mixup:
            other = self._pre(get, int(rng.integers(0, n_items)), n_items, rng, epoch)
            s = self.mixup([s, other], rng)
        return self.photometric(s, rng)


def as_item_pipeline(transform: Any) -> Any:
    """An item pipeline from a plain per-sample transform (``transform(sample, rng)``), or
    the argument itself when it already is one (or None: no augmentation)."""
    if transform is None or isinstance(transform, (ItemPipeline, DetectionPipeline)):
        return transform
    return ItemPipeline(transform)
