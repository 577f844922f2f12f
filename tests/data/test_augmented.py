"""The one data path: extra targets move with the image by kind, collate by field, and the
one dataset seeds every item from (seed, epoch, index[, repeat])."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.collate import Collate
from cvcraft.data.shapes import render_scene
from cvcraft.errors import DataError
from cvcraft.structures import Sample, register_target
from cvcraft.transforms import Compose, HorizontalFlip, RandomAffine, RandomResizedCrop
from cvcraft.transforms.item_pipeline import ItemPipeline

register_target("test_pair", "image")
register_target("test_mask", "mask")
register_target("test_points", "points")
register_target("test_multi_hot", "label")


def scene(seed: int = 0) -> Sample:
    s = render_scene(np.random.default_rng(seed), 64, (2, 3))
    kp = np.concatenate([(s.boxes[:, None, :2] + s.boxes[:, None, 2:]) / 2,
                         np.ones((len(s.boxes), 1, 1), np.float32)], axis=2)  # fmt: skip
    return s.replace(keypoints=kp.astype(np.float32))


@pytest.mark.parametrize(
    "transform",
    [
        HorizontalFlip(p=1.0, keypoint_flip_index=[0]),
        RandomAffine(degrees=20, translate=0.1, scale=0.3, shear=5),
        RandomResizedCrop(48, scale=(0.5, 1.0)),
    ],
    ids=["hflip", "affine", "rrc"],
)
def test_extra_targets_follow_the_geometry_of_their_kind(transform):
    s = scene()
    sem = np.where(s.masks.any(0), 1, 0).astype(np.uint8)
    s = s.replace(
        semantic_mask=sem,
        extras={
            "test_pair": s.image.copy(),
            "test_mask": sem.copy(),
            "test_points": s.keypoints.copy(),
            "test_multi_hot": np.array([1, 0, 1], np.float32),
        },
    )
    out = transform(s, np.random.default_rng(3))
    # the paired image is warped exactly like the image, the mask like the mask, ...
    np.testing.assert_array_equal(out.extras["test_pair"], out.image)
    np.testing.assert_array_equal(out.extras["test_mask"], out.semantic_mask)
    np.testing.assert_array_equal(out.extras["test_points"], out.keypoints)
    np.testing.assert_array_equal(out.extras["test_multi_hot"], [1, 0, 1])
    assert len(out.extras["test_points"]) == len(out.boxes)  # rows dropped with their boxes
    # a single-channel paired image (infrared) warps like each channel of the image
    g = s.replace(extras={"test_pair": s.image[..., 1].copy()})
    gout = transform(g, np.random.default_rng(3))
    assert gout.extras["test_pair"].shape == gout.image.shape[:2]
    np.testing.assert_array_equal(gout.extras["test_pair"], gout.image[..., 1])


def test_an_unregistered_extra_is_refused_by_name():
    s = scene().replace(extras={"nobody_registered_me": np.zeros(3)})
    with pytest.raises(ValueError, match="nobody_registered_me.*register_target"):
        HorizontalFlip(p=1.0)(s, np.random.default_rng(0))


def test_collate_by_fields_and_extras():
    samples = [
        Sample(np.full((4, 5, 3), i, np.uint8), label=i,
               extras={"test_pair": np.full((4, 5), 10 + i, np.uint8),
                       "test_multi_hot": np.array([i, 1 - i], np.float32),
                       "test_points": np.zeros((i + 1, 2, 3), np.float32)},
               meta={"index": 7 + i})
        for i in range(2)
    ]  # fmt: skip
    b = Collate(("image", "label"), extras=("test_pair", "test_multi_hot", "test_points"))(samples)
    assert b["images"].shape == (2, 3, 4, 5) and b["images"].dtype == torch.uint8
    assert b["labels"].tolist() == [0, 1] and b["index"].tolist() == [7, 8]
    assert b["test_pair"].shape == (2, 1, 4, 5) and b["test_pair"][1, 0, 0, 0] == 11
    assert b["test_multi_hot"].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert [p.shape[0] for p in b["test_points"]] == [1, 2]
    padded = Collate(("image", "semantic_mask"), pad=True)(
        [Sample(np.ones((2, 3, 3), np.uint8), semantic_mask=np.zeros((2, 3), np.uint8)),
         Sample(np.ones((4, 2, 3), np.uint8))]
    )  # fmt: skip
    assert padded["images"].shape == (2, 3, 4, 3)
    assert padded["masks"][0, 2:].eq(255).all() and padded["masks"][1].eq(255).all()
    assert padded["sizes"].tolist() == [[2, 3], [4, 2]]
    with pytest.raises(DataError, match="differ in size"):
        Collate(("image",))(
            [Sample(np.ones((2, 3, 3), np.uint8)), Sample(np.ones((4, 2, 3), np.uint8))]
        )
    with pytest.raises(ValueError, match="pick one"):
        Collate(("label", "boxes"))


class Source:
    classes = ["a"]

    def __len__(self):
        return 5

    def sample(self, i):
        return Sample(np.full((8, 8, 3), 10 * i, np.uint8), label=0, meta={"path": f"{i}.png"})


def test_one_dataset_seeds_items_by_seed_epoch_index_and_repeat():
    flip = Compose([RandomAffine(degrees=30), HorizontalFlip(p=0.5)])
    ds = AugmentedDataset(Source(), flip, seed=4)
    a, b = ds[(1, 3)], ds[(1, 3)]
    np.testing.assert_array_equal(a.image, b.image)
    ref = flip(Source().sample(3), np.random.default_rng([4, 1, 3]))
    np.testing.assert_array_equal(a.image, ref.image)
    rep = ds[(1, 3, 2)]
    ref2 = flip(Source().sample(3), np.random.default_rng([4, 1, 3, 2]))
    np.testing.assert_array_equal(rep.image, ref2.image)
    assert rep.meta["repeat"] == 2 and a.meta["index"] == 3 and "repeat" not in a.meta
    assert ds[3].meta["index"] == 3  # a plain index is epoch 0
    with pytest.raises(IndexError, match="out of range"):
        ds[(0, 5)]


def test_item_pipeline_multi_steps_draw_once_each_and_stop_at_until():
    calls = []

    class Pair:
        n_inputs = 2

        def __call__(self, samples, rng):
            calls.append([s.meta["path"] for s in samples])
            return samples[0].replace(meta={**samples[0].meta, "paired": True})

    pipe = ItemPipeline(None, [(Pair(), 1.0)], draw=True, until=2)
    rng = np.random.default_rng(0)
    out = pipe(Source().sample, 1, 5, rng, epoch=1)
    assert out.meta.get("paired") and calls[0][0] == "1.png"
    # the same draws as by hand: one probability draw, then the partner index
    r = np.random.default_rng(0)
    r.random()
    assert calls[0][1] == f"{int(r.integers(0, 5, size=1)[0])}.png"
    late = pipe(Source().sample, 1, 5, np.random.default_rng(0), epoch=2)
    assert "paired" not in late.meta and len(calls) == 1
