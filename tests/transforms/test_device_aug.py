"""Alternating flip and pre-padded translation, checked against hand-made references."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError, DataError
from cvcraft.transforms.device_aug import (
    DeviceAugment,
    alternating_flip_mask,
    first_flip,
    flip_where,
    random_offsets,
    reflect_pad,
    translate,
)


def test_alternating_flip_complements_every_epoch():
    idx = torch.arange(10_000)
    masks = [alternating_flip_mask(idx, e, seed=3) for e in range(5)]
    for e in range(4):
        flipped = set(idx[masks[e]].tolist())
        nxt = set(idx[masks[e + 1]].tolist())
        assert nxt == set(range(10_000)) - flipped
    assert torch.equal(masks[0], masks[2]) and torch.equal(masks[1], masks[3])
    # the first-epoch choice is a fair coin, differs by seed, and depends only on the index
    assert 0.47 < masks[0].float().mean() < 0.53
    assert (first_flip(idx, 3) != first_flip(idx, 4)).float().mean() > 0.4
    perm = torch.randperm(10_000)
    assert torch.equal(first_flip(perm, 3), masks[0][perm])


def test_flip_where_by_hand():
    x = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    mask = torch.tensor([True, False, False, True])
    out = flip_where(x, mask)
    for i in range(4):
        ref = x[i].numpy()[:, :, ::-1] if mask[i] else x[i].numpy()
        np.testing.assert_array_equal(out[i].numpy(), ref)


@pytest.mark.parametrize("pad", [0, 1, 2, 4])
def test_reflect_pad_equals_numpy(pad):
    x = torch.randint(0, 256, (2, 3, 7, 5), dtype=torch.uint8)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
    out = reflect_pad(x, pad)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), ref)


def test_translate_equals_slicing_by_hand():
    g = torch.Generator().manual_seed(0)
    padded = torch.randint(0, 256, (16, 3, 12, 13), dtype=torch.uint8)
    offsets = random_offsets(16, 2, g)
    assert int(offsets.min()) >= 0 and int(offsets.max()) <= 4
    # the extremes are reachable
    offsets[0] = torch.tensor([0, 0])
    offsets[1] = torch.tensor([4, 5])
    out = translate(padded, offsets, (8, 8))
    for n in range(16):
        dy, dx = offsets[n].tolist()
        assert torch.equal(out[n], padded[n, :, dy : dy + 8, dx : dx + 8])


def test_device_augment_composes_flip_then_translate():
    x = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    idx = torch.arange(100, 108)
    aug = DeviceAugment(flip=True, pad=2, seed=1)
    out = aug(x, idx, 3, torch.Generator().manual_seed(7))
    offsets = random_offsets(8, 2, torch.Generator().manual_seed(7))
    mask = alternating_flip_mask(idx, 3, 1)
    for n in range(8):
        img = x[n].numpy()[:, :, ::-1] if mask[n] else x[n].numpy()
        p = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="reflect")
        dy, dx = offsets[n].tolist()
        np.testing.assert_array_equal(out[n].numpy(), p[:, dy : dy + 6, dx : dx + 6])


def test_bad_inputs():
    with pytest.raises(ConfigError, match="pad=7"):
        reflect_pad(torch.zeros(1, 3, 6, 6, dtype=torch.uint8), 7)
    with pytest.raises(DataError, match="offsets must be in"):
        translate(torch.zeros(1, 3, 8, 8), torch.tensor([[0, 5]]), (6, 6))
    with pytest.raises(DataError, match=r"\(N, 2\)"):
        translate(torch.zeros(2, 3, 8, 8), torch.tensor([[0, 1]]), (6, 6))
    with pytest.raises(DataError, match="mask"):
        flip_where(torch.zeros(2, 3, 4, 4), torch.tensor([True]))
    with pytest.raises(ConfigError, match="pad=-1"):
        DeviceAugment(pad=-1)
