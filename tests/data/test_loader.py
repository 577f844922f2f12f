"""EpochSampler / collate / build_loader: same batches for any worker count."""

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from cvcraft.data.classification import ArrayData
from cvcraft.data.datasets import ClassifyDataset
from cvcraft.data.loader import EpochSampler, build_loader, collate_classify, set_epoch
from cvcraft.errors import DataError
from cvcraft.structures import Sample


def test_epoch_sampler_permutation_and_epochs():
    s = EpochSampler(10, shuffle=True, seed=3)
    first = list(s)
    assert first == [(0, int(i)) for i in np.random.default_rng([3, 0]).permutation(10)]
    s.set_epoch(1)
    second = list(s)
    assert [e for e, _ in second] == [1] * 10 and [i for _, i in second] != [i for _, i in first]
    assert sorted(i for _, i in second) == list(range(10))


def test_epoch_sampler_ddp_padding_matches_distributed_sampler():
    n, reps = 10, 3
    ours = [
        [i for _, i in EpochSampler(n, False, 0, num_replicas=reps, rank=r)] for r in range(reps)
    ]
    ref = [list(DistributedSampler(range(n), reps, r, shuffle=False)) for r in range(reps)]
    assert ours == ref
    shuffled = [EpochSampler(n, True, 0, num_replicas=reps, rank=r) for r in range(reps)]
    seen = sorted(i for s in shuffled for _, i in s)
    assert len(seen) == 12 and set(seen) == set(range(n)) and all(len(s) == 4 for s in shuffled)


def test_collate_layout_and_size_error():
    imgs = [np.random.default_rng(i).integers(0, 256, (4, 5, 3), dtype=np.uint8) for i in range(2)]
    batch = collate_classify(
        [Sample(im, label=i, meta={"index": 7 + i}) for i, im in enumerate(imgs)]
    )
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(batch["images"][1].permute(1, 2, 0).numpy(), imgs[1])
    assert batch["labels"].tolist() == [0, 1] and batch["index"].tolist() == [7, 8]
    with pytest.raises(DataError, match="resize/crop"):
        collate_classify([Sample(imgs[0]), Sample(np.zeros((3, 3, 3), np.uint8))])


def jitter(sample, rng):
    """A random transform for the test: noise + random horizontal flip."""
    img = sample.image.astype(np.int64) + rng.integers(0, 40, sample.image.shape)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return sample.replace(image=np.clip(img, 0, 255).astype(np.uint8))


def _batches(loader):
    return [(b["images"].clone(), b["labels"].clone(), b["index"].clone()) for b in loader]


def test_loader_identical_across_worker_counts():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = ArrayData(
        rng.integers(0, 200, (22, 6, 6, 3), dtype=np.uint8),
        rng.integers(0, 3, 22),
        ["a", "b", "c"],
        "mem",
    )
    ds = ClassifyDataset(data, jitter, seed=11)
    l0 = build_loader(ds, 5, shuffle=True, workers=0, seed=4)
    l2 = build_loader(ds, 5, shuffle=True, workers=2, seed=4)
    for epoch in (0, 1):
        set_epoch(l0, epoch)
        set_epoch(l2, epoch)
        a, b = _batches(l0), _batches(l2)
        assert len(a) == 5 and [len(x[0]) for x in a] == [5, 5, 5, 5, 2]
        for (ia, la, xa), (ib, lb, xb) in zip(a, b, strict=True):
            assert torch.equal(ia, ib) and torch.equal(la, lb) and torch.equal(xa, xb)
        if epoch == 0:
            e0 = a
    assert not torch.equal(torch.cat([x[2] for x in e0]), torch.cat([x[2] for x in a]))
    # labels travel with their index
    idx = torch.cat([x[2] for x in a])
    assert torch.equal(torch.cat([x[1] for x in a]), torch.from_numpy(data.labels)[idx])
    drop = build_loader(ds, 5, shuffle=False, workers=0, drop_last=True)
    assert len(list(drop)) == 4
