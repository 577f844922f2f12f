"""Engine pieces: SomeOf, record/replay through nested containers, every registered
single-image transform built from a YAML-style spec and run on a sample with all targets,
Letterbox vs ultralytics' LetterBox and the unletterbox round trip, PadToSize/Resize modes."""

import numpy as np
import pytest

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import (
    TRANSFORMS,
    Compose,
    HorizontalFlip,
    Invert,
    Letterbox,
    OneOf,
    PadToSize,
    RandAugment,
    RandomAffine,
    RandomApply,
    Resize,
    Solarize,
    SomeOf,
    VerticalFlip,
    build_transforms,
    letterbox_params,
    unletterbox_boxes,
)


def full_sample(h=60, w=80) -> Sample:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = np.array([[10, 8, 40, 30], [45, 20, 75, 55]], np.float32)
    masks = np.zeros((2, h, w), bool)
    masks[0, 8:30, 10:40] = masks[1, 20:55, 45:75] = True
    kp = np.array([[[20, 15, 2]], [[60, 40, 2]]], np.float32)
    return Sample(
        img,
        boxes=boxes,
        box_labels=[3, 4],
        masks=masks,
        semantic_mask=masks[0] * 1 + masks[1] * 2,
        keypoints=kp,
    )


def test_some_of_picks_n_distinct_and_replays():
    ops = [HorizontalFlip(1.0), VerticalFlip(1.0), Invert(), Solarize(100)]
    s = full_sample()
    t = SomeOf(ops, n=2)
    counts = np.zeros(4)
    for seed in range(200):
        out, p = t(s, seed, record=True)
        assert len(p["indices"]) == 2 and len(set(p["indices"])) == 2
        counts[p["indices"]] += 1
        if seed < 10:
            assert np.array_equal(t.replay(s, p).image, out.image)
    assert counts.min() > 60  # each op chosen in ~half of the calls (100 expected)
    sizes = {len(SomeOf(ops, n=(0, 3))(s, k, record=True)[1]["indices"]) for k in range(60)}
    assert sizes == {0, 1, 2, 3}
    for k in range(20):
        idx = SomeOf(ops, n=3, keep_order=True)(s, k, record=True)[1]["indices"]
        assert idx == sorted(idx)
    with pytest.raises(
        ConfigError, match="SomeOf: need 0 <= n_min <= n_max <= 4 transforms, got n=5"
    ):
        SomeOf(ops, n=5)


def test_nested_containers_record_and_replay():
    t = Compose(
        [
            OneOf([RandomAffine(20, 0.1), HorizontalFlip(1.0)]),
            RandomApply(RandAugment(2, 7), p=0.7),
            SomeOf([Invert(), Solarize(128), VerticalFlip(1.0)], n=(1, 2)),
        ]
    )
    s = full_sample()
    for seed in range(8):
        out, params = t(s, seed, record=True)
        again = t.replay(s, params)
        for k in ("image", "boxes", "masks", "semantic_mask", "keypoints"):
            assert np.array_equal(getattr(out, k), getattr(again, k)), k


# arguments for the transforms that have required ones
REQUIRED = {
    "resize": {"size": 48},
    "center_crop": {"size": 40},
    "random_resized_crop": {"size": 40},
    "pad_random_crop": {"size": 60},
    "pad_to_size": {"size": 90},
    "random_rotation": {"degrees": 20},
    "letterbox": {"size": 64},
    "random_affine": {"degrees": 10, "translate": 0.1},
    "compose": {"transforms": ["hflip"]},
    "one_of": {"transforms": ["hflip", "vflip"]},
    "some_of": {"transforms": ["hflip", "vflip"], "n": 1},
    "random_apply": {"transform": "hflip"},
}
SKIP = {"normalize"}  # returns float CHW-ready data, covered by its own tests
ENGINE_MODULES = {
    f"cvcraft.transforms.{m}"
    for m in ("base", "geometric", "color", "erase", "photometric", "policies", "letterbox")
}
NAMES = [
    n
    for n in TRANSFORMS.names()
    if n not in SKIP and TRANSFORMS.get(n).__module__ in ENGINE_MODULES
]


def test_the_registry_holds_the_new_ops():
    assert len(NAMES) >= 45
    for n in ("some_of", "random_perspective", "random_crop_keep_boxes", "letterbox", "augmix"):
        assert n in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_transform_builds_from_spec_and_keeps_targets_aligned(name):
    t = build_transforms([{"name": name, **REQUIRED.get(name, {})}])
    s = full_sample()
    out = t(s, 5)
    a = t(s, 5)
    assert np.array_equal(out.image, a.image)  # seeded
    h, w = out.image.shape[:2]
    assert out.image.dtype == np.uint8
    n = len(out.boxes)
    assert out.masks.shape == (n, h, w) and len(out.box_labels) == n == len(out.keypoints)
    assert out.semantic_mask.shape == (h, w)
    assert (out.boxes[:, :2] >= 0).all() and (out.boxes[:, 2] <= w).all()
    assert (out.boxes[:, 3] <= h).all()


def test_letterbox_matches_ultralytics_and_maps_back():
    augment = pytest.importorskip("ultralytics.data.augment")  # oracle from the bench extra
    LetterBox = augment.LetterBox

    rng = np.random.default_rng(0)
    for h, w, size in [(480, 640, 640), (427, 640, 320), (500, 375, 640), (60, 90, 128)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = Letterbox(size, interpolation="linear")(img, 0)
        ref = LetterBox((size, size), auto=False)(image=img)
        assert ours.shape == ref.shape
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    # auto: the minimal stride-multiple rectangle (YOLOv5 inference shapes)
    p = letterbox_params((480, 640), (640, 640), auto=True, stride=32)
    assert p["size"] == (480, 640) and p["pad"] == (0, 0, 0, 0)
    p = letterbox_params((500, 375), (640, 640), auto=True, stride=32)
    assert p["size"][0] == 640 and p["size"][1] % 32 == 0 and p["size"][1] < 640
    # no scaleup: a small image is padded, not enlarged
    assert letterbox_params((100, 50), (640, 640), scaleup=False)["resized"] == (100, 50)


def test_unletterbox_round_trip():
    s = full_sample(83, 121)
    out = Letterbox(160)(s, 0)
    assert out.meta["letterbox"]["orig_size"] == (83, 121)
    back = unletterbox_boxes(out.boxes, out.meta)
    np.testing.assert_allclose(back, s.boxes, atol=1e-4)
    import torch

    back_t = unletterbox_boxes(torch.from_numpy(out.boxes), out.meta["letterbox"])
    np.testing.assert_allclose(back_t.numpy(), s.boxes, atol=1e-4)
    with pytest.raises(
        ConfigError, match="meta has no letterbox 'scale'; pass the meta of a sample"
    ):
        unletterbox_boxes(out.boxes, {})


def test_pad_to_size_and_resize_long_side():
    s = full_sample()
    out = PadToSize((70, 100), position="top_left")(s, 0)
    assert out.image.shape[:2] == (70, 100) and np.array_equal(out.boxes, s.boxes)
    assert (out.semantic_mask[60:] == 255).all() and (out.image[60:] == 0).all()
    out = PadToSize((70, 100))(s, 0)
    np.testing.assert_allclose(out.boxes, s.boxes + [10, 5, 10, 5])
    assert Resize(40, keep_ratio=True, side="long")(s, 0).image.shape[:2] == (30, 40)
    assert Resize(40, keep_ratio=True)(s, 0).image.shape[:2] == (40, 53)


def test_classify_recipe_takes_a_policy_and_erasing():
    from cvcraft.transforms import AutoAugment, RandomErasing, default_classify_transforms

    t = default_classify_transforms(32, True, policy="autoaugment:cifar10", erasing=0.25)
    kinds = [type(s) for s in t.transforms]
    assert AutoAugment in kinds and kinds[-1] is RandomErasing and t[-1].p == 0.25
    assert t.transforms[kinds.index(AutoAugment)].policy == "cifar10"
    assert t(np.zeros((40, 40, 3), np.uint8), 0).shape == (32, 32, 3)
    with pytest.raises(ConfigError, match="policy 'randaug' is unknown; use autoaugment"):
        default_classify_transforms(32, True, policy="randaug")


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_transform_accepts_float32(name):
    t = build_transforms([{"name": name, **REQUIRED.get(name, {})}])
    s = full_sample()
    f = s.replace(image=s.image.astype(np.float32))
    out_u8, out_f = t(s, 3), t(f, 3)
    assert out_f.image.dtype == np.float32 and out_f.image.shape == out_u8.image.shape
    # same parameters, same op: the float result tracks the uint8 one
    assert np.abs(out_f.image - out_u8.image.astype(np.float32)).mean() < 3.0
