"""P x K sampler: every batch has P distinct identities x K images, deterministic per epoch."""

import numpy as np
import pytest

from cvcraft.data.pk_sampler import PKSampler
from cvcraft.errors import ConfigError, DataError


@pytest.mark.parametrize("p,k", [(4, 4), (3, 5), (6, 2)])
def test_batches_hold_p_identities_of_k_images(p, k):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 90)
    labels[labels == 6] = 5  # identities of very different sizes
    labels[:2] = 6  # an identity with fewer than K images: repeats with new views
    s = PKSampler(labels, p, k, seed=3)
    batches = list(s)
    assert len(batches) == 90 // (p * k)
    for b in batches:
        idx = np.array([i for _, i, _ in b])
        ids, counts = np.unique(labels[idx], return_counts=True)
        assert len(ids) == p and (counts == k).all()
        keys = {(i, r) for _, i, r in b}
        assert len(keys) == len(b)  # a repeated image is always a different view
    s2 = PKSampler(labels, p, k, seed=3)
    assert list(s2) == batches
    s2.set_epoch(1)
    assert list(s2) != batches and all(e == 1 for b in s2 for e, _, _ in b)


def test_ranks_split_the_batches_and_errors():
    labels = np.repeat(np.arange(8), 6)
    full = PKSampler(labels, 4, 3).batches()
    r0 = list(PKSampler(labels, 4, 3, num_replicas=2, rank=0))
    r1 = list(PKSampler(labels, 4, 3, num_replicas=2, rank=1))
    assert r0 == full[0::2] and r1 == full[1::2]
    with pytest.raises(DataError, match="only 8; lower p"):
        PKSampler(labels, 9, 2)
    with pytest.raises(ConfigError, match="p >= 2 and k >= 2"):
        PKSampler(labels, 4, 1)
