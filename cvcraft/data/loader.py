"""Epoch-aware sampling, classification collate and the DataLoader factory.

The sampler yields ``(epoch, index)`` pairs, and the dataset seeds each item's augmentation
from ``(seed, epoch, index)``. That per-item generator — not the worker seeds — is what makes
batches identical for any number of workers and across a resume: which worker happens to
load an item does not change what it draws. Worker processes are still seeded (torch, numpy,
random) from ``(seed, epoch, worker_id)`` for any code that uses the global generators.

Under DDP a training loader over tar shards (``cvcraft pack``) uses ``ShardSampler``: each
rank reads whole shards of its own instead of every rank touching every shard.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from cvcraft.data.collate import collate_classify
from cvcraft.data.webdataset import shard_folder_of, shard_ids_of
from cvcraft.errors import ConfigError, DataError


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``; the order is ``default_rng([seed, epoch]).permutation(n)``.

    With ``num_replicas > 1`` (DDP) rank ``r`` takes positions ``r, r + num_replicas, ...`` of
    the epoch's permutation, so the ranks' batches together are exactly the batches one
    process would draw with the global batch. ``pad=True`` (training) gives every rank
    ``ceil(n / num_replicas)`` items by repeating the permutation's start (as
    ``DistributedSampler`` does; equal lengths keep DDP's collectives in step);
    ``pad=False`` (evaluation) visits every item exactly once, ranks may differ by one item.
    """

    def __init__(
        self,
        n: int,
        shuffle: bool = True,
        seed: int = 0,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        pad: bool = True,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} must be in [0, num_replicas={num_replicas})")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.num_replicas, self.rank, self.pad = num_replicas, rank, pad
        self.epoch = 0
        if pad:
            self.num_samples = math.ceil(n / num_replicas) if n else 0
        else:
            self.num_samples = len(range(rank, n, num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's item indices for the current epoch, int64 (num_samples,)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if not self.pad:
            return order[self.rank :: self.num_replicas]
        total = self.num_samples * self.num_replicas
        if total > self.n:  # pad (DistributedSampler style) so every rank has equal length
            order = np.resize(order, total)
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.indices())

    def __len__(self) -> int:
        return self.num_samples


class ShardSampler(EpochSampler):
    """DDP training order over tar shards in which each rank reads whole shards of its own.

    ``EpochSampler`` interleaves item indices, so every rank reads from every shard; on
    storage where a shard is a file to fetch (network disks, object stores) that multiplies
    the traffic by the number of ranks. Here, per epoch:

    - the S shards present are permuted with ``default_rng([seed, epoch])``; rank ``r`` takes
      ``perm[r::R]`` (so a shard moves between ranks from epoch to epoch);
    - its items are all items of those shards, shuffled with ``default_rng([seed, epoch, r])``;
    - every rank yields ``ceil(N / R)`` items (equal lengths keep DDP's collectives in step):
      a rank whose shards hold fewer items wraps around its own shuffled list (a few items
      are seen twice), one whose shards hold more drops the tail of its list (those items
      skip this epoch; the next epoch's shard permutation and shuffle differ, so no item is
      left out systematically). With shards of equal size nothing is repeated or dropped
      beyond the last rank's remainder.

    The order depends only on (seed, epoch, rank), so the trainer's exact resume replays it,
    and it yields ``(epoch, index)`` like ``EpochSampler`` (per-item augmentation seeding
    and ``WorkerSeeder`` are unchanged). ``shard_ids`` is int (N,): item i's shard (from the
    dataset's ``shard_ids()``). Fewer shards than ranks raises ``DataError``.
    """

    def __init__(
        self,
        shard_ids: Any,
        seed: int = 0,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        where: str = "the training data",
    ) -> None:
        ids = np.asarray(shard_ids).reshape(-1)
        if ids.dtype.kind not in "iu":
            raise DataError(f"{where}: shard ids must be integers, got {ids.dtype}")
        super().__init__(len(ids), True, seed, num_replicas=num_replicas, rank=rank, pad=True)
        # shard labels present (a split or fraction= may have emptied some shards) and each
        # item's position in that list
        self.shards, self.item_shard = np.unique(ids, return_inverse=True)
        if len(self.shards) < num_replicas:
            most = max(1, len(ids) // num_replicas)
            raise DataError(
                f"{where}: {len(self.shards)} tar shard(s) for {num_replicas} DDP ranks; each "
                f"rank reads whole shards of its own, so pack the data into at least "
                f"{num_replicas} shards (`cvcraft pack ... max_count={most}` or smaller)"
            )

    def indices(self) -> np.ndarray:
        """This rank's item indices for the current epoch, int64 (num_samples,)."""
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        mine = perm[self.rank :: self.num_replicas]
        items = np.flatnonzero(np.isin(self.item_shard, mine))
        items = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(items)
        # np.resize repeats the list cyclically when it is short and truncates when long
        return np.resize(items, self.num_samples).astype(np.int64)


class WorkerSeeder:
    """``worker_init_fn``: seeds torch/numpy/random from (seed, sampler epoch, worker_id).

    Holds the sampler so the epoch is the one current when the workers start. Also pins
    each worker to one torch/OpenCV thread so workers don't oversubscribe the cores.
    """

    def __init__(self, seed: int, sampler: EpochSampler) -> None:
        self.seed, self.sampler = seed, sampler

    def __call__(self, worker_id: int) -> None:
        ss = np.random.SeedSequence([self.seed, self.sampler.epoch, worker_id])
        words = ss.generate_state(4, dtype=np.uint32)
        torch.manual_seed(int(words[0]) << 32 | int(words[1]))
        np.random.seed(words)
        random.seed(int(words[2]) << 32 | int(words[3]))
        torch.set_num_threads(1)
        # No cv2.setNumThreads here: touching OpenCV's thread pool in a forked child can
        # deadlock on a lock the parent's pool held at fork time. build_loader stops the
        # parent's pool before the workers fork instead.


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    collate_fn: Any = collate_classify,
    pin_memory: bool = False,
    distributed: bool | None = None,
    sampler: Any = None,
    **sampler_kwargs: Any,
) -> DataLoader:
    """A DataLoader whose batches are lists of ``(epoch, index)`` from an ``EpochSampler``.

    ``sampler_kwargs`` go to ``EpochSampler`` (``num_replicas``, ``rank``, ``pad``). Workers
    persist across epochs when ``workers > 0``; call ``set_epoch(loader, e)`` before each epoch.

    DDP: with ``distributed`` None (auto) and a torch process group up, the loader shards by
    rank: ``batch_size`` is the *global* batch and each of the R ranks loads
    ``batch_size // R`` items of its slice of the epoch's permutation (padded to equal length
    when ``shuffle``, i.e. training; every item once, unpadded, for evaluation loaders).

    ``sampler`` replaces the EpochSampler (e.g. ``data.sampling.build_sampler``'s class-
    balancing samplers); it must have ``set_epoch``/``epoch`` and be deterministic in
    (seed, epoch). One with ``yields_batches = True`` is used as the batch sampler itself.

    Tar shards: a training loader (``shuffle=True``) with several ranks (a process group,
    or ``num_replicas > 1`` in ``sampler_kwargs``), no ``sampler=`` and a dataset whose
    ``shard_ids()`` is not None gets a ``ShardSampler`` (each rank reads whole shards of
    its own; ``pad`` does not apply, every rank gets ``ceil(n / R)`` items). Single-process
    and evaluation loaders keep the ``EpochSampler``.
    """
    ranks = _dist_ranks() if distributed is not False else None
    if ranks is not None and "num_replicas" not in sampler_kwargs:
        world, rank = ranks
        if batch_size % world:
            raise ConfigError(
                f"batch={batch_size} is the global batch of {world} DDP processes; make it a "
                f"multiple of {world} (e.g. {batch_size - batch_size % world or world})"
            )
        batch_size //= world
        sampler_kwargs = {"num_replicas": world, "rank": rank, "pad": shuffle, **sampler_kwargs}
    if sampler is None:
        sampler = _shard_sampler(dataset, shuffle, seed, sampler_kwargs)
    if sampler is None:
        sampler = EpochSampler(len(dataset), shuffle, seed, **sampler_kwargs)
    batches = sampler if getattr(sampler, "yields_batches", False) else None
    if batches is None:
        batches = BatchSampler(sampler, batch_size, drop_last)
    if workers > 0:
        # OpenCV's worker-thread pool does not survive fork(): a child that uses cv2 can
        # hang on a mutex a pool thread held. With the pool stopped in the parent (0 = no
        # extra threads, as ultralytics does) the forked workers start clean; each worker
        # then decodes/augments single-threaded, which is what we want with N workers.
        cv2.setNumThreads(0)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=WorkerSeeder(seed, sampler) if workers > 0 else None,
        persistent_workers=workers > 0,
        # Workers' base seed is drawn from this generator, not from torch's global one, so
        # starting the loader never shifts the global stream that dropout etc. draw from
        # (a resumed run would otherwise diverge by one draw).
        generator=torch.Generator().manual_seed(seed),
    )


def _shard_sampler(
    dataset: Dataset, shuffle: bool, seed: int, kwargs: dict[str, Any]
) -> ShardSampler | None:
    """A ``ShardSampler`` when a multi-rank training loader reads tar shards, else None."""
    world = int(kwargs.get("num_replicas", 1))
    if not shuffle or world <= 1:
        return None
    ids = shard_ids_of(dataset)
    if ids is None:
        return None
    where = shard_folder_of(dataset) or "the training data (tar shards)"
    if len(ids) != len(dataset):
        raise DataError(
            f"{where}: shard_ids() gives {len(ids)} ids for {len(dataset)} items; a dataset "
            "wrapper must map its shard ids through its own indices"
        )
    rank = int(kwargs.get("rank", 0))
    return ShardSampler(ids, seed, num_replicas=world, rank=rank, where=str(where))


def _dist_ranks() -> tuple[int, int] | None:
    """(world size, rank) when a DDP process group with several ranks is up, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_world_size(), dist.get_rank()
    return None


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of a loader made by ``build_loader`` (its ``EpochSampler``)."""
    sampler = getattr(loader.batch_sampler, "sampler", loader.batch_sampler)
    if not isinstance(sampler, EpochSampler) and not hasattr(sampler, "yields_batches"):
        raise TypeError("set_epoch needs a DataLoader built by cvcraft.data.build_loader")
    sampler.set_epoch(epoch)
