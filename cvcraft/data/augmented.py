"""One dataset for every task: a ``SampleSource`` seen through an item pipeline.

``SampleSource`` is what every reader gives (classification, detection, segmentation data,
tar shards): ``classes``, ``len``, ``sample(i) -> Sample``, ``subset(indices)``.
``AugmentedDataset`` turns it into a torch Dataset whose keys are ``(epoch, index)`` (from
``EpochSampler``), ``(epoch, index, repeat)`` (class-balancing samplers that draw an item
twice) or a plain index. Each item gets its own generator,
``default_rng([seed, epoch, index])`` (``[..., repeat]`` for a repeat > 0), and runs through
the pipeline (``transforms/item_pipeline.py``); so an item depends only on (seed, epoch,
index), for any number of workers and across a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from cvcraft.data.webdataset import shard_ids_of
from cvcraft.structures import Sample
from cvcraft.transforms.item_pipeline import as_item_pipeline


class SampleSource(Protocol):
    """Random access to a dataset's samples, as every reader provides it."""

    classes: Sequence[str]

    def __len__(self) -> int: ...
    def sample(self, i: int) -> Sample: ...
    def subset(self, indices: Sequence[int] | np.ndarray) -> SampleSource: ...


class AugmentedDataset(torch.utils.data.Dataset):
    """``key -> pipeline(source.sample, index, len, rng, epoch)`` with ``meta["index"]`` set.

    ``pipeline`` is an item pipeline (``ItemPipeline`` / ``DetectionPipeline``), a plain
    per-sample transform ``transform(sample, rng)`` (wrapped), or None (samples as read).
    """

    def __init__(self, source: SampleSource, pipeline: Any = None, seed: int = 0) -> None:
        self.data, self.seed = source, int(seed)
        self.pipeline = as_item_pipeline(pipeline)

    def __len__(self) -> int:
        return len(self.data)

    def shard_ids(self) -> np.ndarray | None:
        """The source's item -> tar shard map (None when not sharded), for ``build_loader``.

        Under DDP each rank then reads whole shards of its own, except for multi-sample
        partners (Mosaic, MixUp, Copy-Paste): those are drawn from the whole dataset.
        """
        return shard_ids_of(self.data)

    def __getitem__(self, key: int | tuple[int, ...]) -> Sample:
        parts = tuple(int(k) for k in key) if isinstance(key, tuple) else (0, int(key))
        epoch, index = parts[0], parts[1]
        repeat = parts[2] if len(parts) > 2 else 0
        if not 0 <= index < len(self.data):
            raise IndexError(f"index {index} out of range for {len(self.data)} items")
        if self.pipeline is None:
            sample = self.data.sample(index)
        else:
            seq = [self.seed, epoch, index] + ([repeat] if repeat else [])
            rng = np.random.default_rng(seq)
            sample = self.pipeline(self.data.sample, index, len(self.data), rng, epoch)
        sample.meta["index"] = index
        if repeat:
            sample.meta["repeat"] = repeat
        return sample
