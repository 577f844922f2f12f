"""Fusion pairs: readers, errors naming the file, and the pair staying aligned through
every geometric transform (oracle: the visible image itself, whose channel 0 is the
infrared image before the transform, must equal the moved infrared image after it)."""

import numpy as np
import pytest

from cvcraft.data.fusion import (
    INFRARED,
    SyntheticPairs,
    load_fusion,
    pair_fusion_folders,
)
from cvcraft.data.io import write_image
from cvcraft.errors import DataError
from cvcraft.structures import Sample
from cvcraft.transforms.base import Compose
from cvcraft.transforms.geometric import (
    CenterCrop,
    HorizontalFlip,
    PadRandomCrop,
    RandomAffine,
    RandomPerspective,
    RandomResizedCrop,
    Resize,
    VerticalFlip,
)


def _write_pairs(root, n=3, size=(20, 30)):
    rng = np.random.default_rng(0)
    for i in range(n):
        vis = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        ir = rng.integers(0, 256, size, dtype=np.uint8)
        write_image(root / "visible" / f"p{i}.png", vis)
        write_image(root / "infrared" / f"p{i}.png", ir)


def test_pair_folders_read_aligned_pairs(tmp_path):
    _write_pairs(tmp_path)
    data = pair_fusion_folders(tmp_path)
    assert len(data) == 3
    s = data.sample(1)
    assert s.image.shape == (20, 30, 3) and s.extras[INFRARED].shape == (20, 30)
    assert s.meta["infrared_path"].endswith("p1.png") and s.meta["path"].endswith("p1.png")
    splits = load_fusion(str(tmp_path), val_fraction=0.34, seed=0)
    assert len(splits.train) == 2 and len(splits.val) == 1 and splits.classes == []


def test_unpaired_and_mismatched_pairs_name_the_file(tmp_path):
    _write_pairs(tmp_path)
    write_image(tmp_path / "visible" / "lonely.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"lonely\.png has no infrared partner"):
        pair_fusion_folders(tmp_path)
    (tmp_path / "visible" / "lonely.png").unlink()
    write_image(tmp_path / "infrared" / "p0.png", np.zeros((21, 30), np.uint8))
    with pytest.raises(DataError, match=r"infrared/p0\.png: infrared image is 30x21 but"):
        pair_fusion_folders(tmp_path).sample(0)
    with pytest.raises(DataError, match="not a fusion dataset"):
        load_fusion(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="infrared folder not found"):
        pair_fusion_folders(tmp_path / "infrared")


def test_synthetic_pairs_are_fixed_by_seed_and_index():
    a, b = SyntheticPairs(4, 32, seed=1), SyntheticPairs(4, 32, seed=1)
    s, t = a.sample(2), b.sample(2)
    assert np.array_equal(s.image, t.image) and np.array_equal(
        s.extras[INFRARED], t.extras[INFRARED]
    )
    assert not np.array_equal(a.sample(1).image, s.image)
    # the infrared view has warm targets: its maximum exceeds the dimmed scene's
    assert s.extras[INFRARED].max() > 0.4 * s.image.max()
    splits = load_fusion("synthetic:10", val_fraction=0.2, imgsz=24)
    assert len(splits.train) == 10 and len(splits.val) == 2
    assert splits.val.sample(0).image.shape == (24, 24, 3)


TRANSFORMS = [
    PadRandomCrop(24, padding=3),
    HorizontalFlip(p=1.0),
    VerticalFlip(p=1.0),
    CenterCrop(17),
    Resize(23, keep_ratio=True, side="long"),
    RandomResizedCrop(20),
    RandomAffine(degrees=30, translate=0.1, scale=(0.7, 1.3), shear=10),
    RandomPerspective(0.3, p=1.0),
]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_the_pair_stays_aligned_through_geometric_transforms(t):
    rng = np.random.default_rng(3)
    ir = rng.integers(0, 256, (31, 40), dtype=np.uint8)
    vis = np.stack([ir, 255 - ir, ir // 2], -1)
    sample = Sample(image=vis, extras={INFRARED: ir})
    for seed in range(4):
        out = t(sample, seed)
        assert out.extras[INFRARED].shape == out.image.shape[:2]
        assert np.array_equal(out.extras[INFRARED], out.image[..., 0])
    out = Compose([PadRandomCrop(16, padding=0), HorizontalFlip(p=0.5)])(sample, 7)
    assert np.array_equal(out.extras[INFRARED], out.image[..., 0])
