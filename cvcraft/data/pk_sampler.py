"""The P x K identity sampler of metric learning: every batch holds P identities with K
images each, so every anchor has positives and negatives in its batch (batch-hard mining
and contrastive pairs need both).

Per epoch: ``N // (P K)`` batches. Identities are drawn without replacement from successive
fresh permutations of the identities (every identity appears before any repeats); an
identity's K images come from successive permutations of its images, so an identity with
fewer than K images repeats them, each copy a new augmented view (``repeat`` > 0).
Yields lists of ``(epoch, index, repeat)`` keys; deterministic in (seed, epoch); with
``num_replicas`` > 1 rank r takes batches r, r + R, ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError

Key = tuple[int, int, int]


class PKSampler:
    """Batches of ``p`` identities x ``k`` images (a batch sampler for ``build_loader``)."""

    yields_batches = True

    def __init__(
        self, labels: Any, p: int, k: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0
    ) -> None:
        y = np.asarray(labels, np.int64).reshape(-1)
        if p < 2 or k < 2:
            raise ConfigError(f"P x K sampling needs p >= 2 and k >= 2, got p={p}, k={k}")
        self.ids = np.unique(y)
        if len(self.ids) < p:
            raise DataError(
                f"P x K sampling: p={p} identities per batch but the data has only "
                f"{len(self.ids)}; lower p"
            )
        order = np.argsort(y, kind="stable")
        starts = np.searchsorted(y[order], self.ids)
        self.members = np.split(order, starts[1:])  # item indices of each identity
        self.p, self.k, self.seed = int(p), int(k), seed
        self.total_batches = max(1, len(y) // (p * k))
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[Key]]:
        """All batches of the current epoch (before the rank split)."""
        rng = np.random.default_rng([self.seed, self.epoch, 5])
        nb, p, k = self.total_batches, self.p, self.k
        cycles = -(-nb * p // len(self.ids))
        picks = np.concatenate([rng.permutation(len(self.ids)) for _ in range(cycles)])
        # a batch must not hold one identity twice: repeats only occur across cycle seams,
        # so re-draw any batch with duplicates from the identities it does not yet hold
        picks = picks[: nb * p].reshape(nb, p)
        for b in np.flatnonzero([len(set(row)) < p for row in picks]):
            row = list(dict.fromkeys(picks[b].tolist()))
            rest = np.setdiff1d(np.arange(len(self.ids)), row)
            picks[b] = row + rng.choice(rest, p - len(row), replace=False).tolist()
        streams: dict[int, list[int]] = {}
        cursor = np.zeros(len(self.ids), np.int64)
        out: list[list[Key]] = []
        for row in picks:  # one identity at a time: P per batch, a handful of batches
            batch: list[Key] = []
            for ident in row:
                mem = self.members[ident]
                need = cursor[ident] + k
                have = streams.setdefault(int(ident), [])
                while len(have) < need:
                    have.extend(rng.permutation(mem).tolist())
                pos = np.arange(cursor[ident], need)
                batch += [(self.epoch, int(have[j]), int(j // len(mem))) for j in pos]
                cursor[ident] = need
            out.append(batch)
        return out

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self.total_batches, self.num_replicas))
