"""AutoAugment / RandAugment / TrivialAugmentWide / AugMix: policy tables and magnitude
bins vs torchvision's (the papers' tables), each op's pixels vs torchvision's op at the same
magnitude, op counts, targets following geometric ops, determinism and replay."""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from cvcraft.structures import Sample
from cvcraft.transforms import AugMix, AutoAugment, RandAugment, TrivialAugmentWide
from cvcraft.transforms import policies as PO


def smooth_image(h=48, w=64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 4, yy * 5, 128 + 90 * np.sin(xx / 5.0 + yy / 7.0)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


IMG = smooth_image()


@pytest.mark.parametrize(
    "name, ref", [("imagenet", "IMAGENET"), ("cifar10", "CIFAR10"), ("svhn", "SVHN")]
)
def test_autoaugment_tables_match_torchvision(name, ref):
    theirs = T.AutoAugment(getattr(T.AutoAugmentPolicy, ref))._policies
    assert [tuple(map(tuple, sp)) for sp in PO.AUTOAUGMENT_POLICIES[name]] == [
        tuple(map(tuple, sp)) for sp in theirs
    ]


@pytest.mark.parametrize(
    "space, cls, bins",
    [
        (PO.AUTOAUGMENT_SPACE, T.AutoAugment, 10),
        (PO.RANDAUGMENT_SPACE, T.RandAugment, 31),
        (PO.TRIVIALAUGMENT_SPACE, T.TrivialAugmentWide, 31),
        (PO.AUGMIX_SPACE, T.AugMix, 10),
        (PO.AUGMIX_PARTIAL_SPACE, None, 10),
    ],
)
def test_magnitude_bins_match_torchvision(space, cls, bins):
    ref_space = cls._AUGMENTATION_SPACE if cls is not None else T.AugMix._PARTIAL_AUGMENTATION_SPACE
    assert set(space) == set(ref_space)
    for name, (fn, signed) in space.items():
        ref_fn, ref_signed = ref_space[name]
        ours, ref = fn(bins, 331, 300), ref_fn(bins, 331, 300)
        assert signed == ref_signed, name
        if ref is None:
            assert ours is None, name
        else:
            np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6, atol=1e-5, err_msg=name)


def tv_op(img, name, m):
    """torchvision's op for a policy name at magnitude m (the reference semantics)."""
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    fns = {
        "ShearX": lambda: TF.affine(
            t, 0.0, [0, 0], 1.0, [math.degrees(math.atan(m)), 0.0], center=[0, 0]
        ),
        "ShearY": lambda: TF.affine(
            t, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(m))], center=[0, 0]
        ),
        "TranslateX": lambda: TF.affine(t, 0.0, [int(m), 0], 1.0, [0.0, 0.0]),
        "TranslateY": lambda: TF.affine(t, 0.0, [0, int(m)], 1.0, [0.0, 0.0]),
        "Rotate": lambda: TF.rotate(t, m),
        "Brightness": lambda: TF.adjust_brightness(t, 1 + m),
        "Color": lambda: TF.adjust_saturation(t, 1 + m),
        "Contrast": lambda: TF.adjust_contrast(t, 1 + m),
        "Sharpness": lambda: TF.adjust_sharpness(t, 1 + m),
        "Posterize": lambda: TF.posterize(t, int(m)),
        "Solarize": lambda: TF.solarize(t, 255.0 * m),
        "AutoContrast": lambda: TF.autocontrast(t),
        "Equalize": lambda: TF.equalize(t),
        "Invert": lambda: TF.invert(t),
        "Identity": lambda: t,
    }
    return fns[name]().permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    "name, m",
    [
        ("ShearX", 0.2),
        ("ShearX", -0.25),
        ("ShearY", 0.15),
        ("TranslateX", 9.7),
        ("TranslateY", -12.0),
        ("Rotate", 20.0),
        ("Rotate", -13.0),
        ("Brightness", 0.5),
        ("Color", -0.6),
        ("Contrast", 0.4),
        ("Sharpness", 0.8),
        ("Posterize", 5),
        ("Solarize", 0.4),
        ("AutoContrast", 0),
        ("Equalize", 0),
        ("Invert", 0),
        ("Identity", 0),
    ],
)
def test_ops_match_torchvision(name, m):
    ours = PO.apply_op(Sample(IMG), name, m).image
    ref = tv_op(IMG, name, m)
    d = np.abs(ours.astype(int) - ref.astype(int))
    if name in ("ShearX", "ShearY", "Rotate", "TranslateX", "TranslateY"):
        # nearest sampling: ties at exact half-pixels may round differently; geometry must agree
        assert np.mean(d > 8) < 0.04, name
    else:
        assert d.max() <= 2, name


def test_geometric_policy_ops_move_boxes():
    s = Sample(IMG, boxes=[[10, 10, 30, 20]], box_labels=[1])
    out = PO.apply_op(s, "TranslateX", 7.9)  # int(7.9) = 7 px, like torchvision
    np.testing.assert_allclose(out.boxes, [[17, 10, 37, 20]])
    out = PO.apply_op(s, "ShearX", 0.5)  # x' = x - 0.5 y about the top-left corner
    np.testing.assert_allclose(out.boxes, [[0, 10, 25, 20]], atol=1e-4)


def test_autoaugment_draws_from_its_table():
    t = AutoAugment("svhn")
    for seed in range(40):
        _, p = t(IMG, seed, record=True)
        sub = PO.AUTOAUGMENT_POLICIES["svhn"][p["policy_index"]]
        assert [n for n, _ in p["ops"]] == [n for n, _, _ in sub][: len(p["ops"])] or all(
            n in [s[0] for s in sub] for n, _ in p["ops"]
        )
        for name, m in p["ops"]:
            level = dict((n, lv) for n, _, lv in sub)[name]
            bins = PO.magnitude_bins(PO.AUTOAUGMENT_SPACE, name, 10, *IMG.shape[:2])
            assert (bins is None and m == 0) or abs(abs(m) - bins[level]) < 1e-6


def test_randaugment_count_magnitude_and_random_magnitude():
    t = RandAugment(num_ops=3, magnitude=9)
    names = set()
    for seed in range(50):
        _, p = t(IMG, seed, record=True)
        assert len(p["ops"]) == 3
        for name, m in p["ops"]:
            names.add(name)
            bins = PO.magnitude_bins(PO.RANDAUGMENT_SPACE, name, 31, *IMG.shape[:2])
            assert (bins is None and m == 0) or abs(abs(m) - bins[9]) < 1e-6
    assert len(names) >= 12  # uniform over 14 ops
    levels = set()
    for seed in range(60):
        _, p = RandAugment(2, 9, random_magnitude=True)(IMG, seed, record=True)
        for name, m in p["ops"]:
            if name == "Rotate":  # bins are 0, 1, ..., 30 degrees * 30/30 -> level = |m|
                levels.add(round(abs(m)))
    assert levels and max(levels) <= 9 and len(levels) > 1


def test_trivialaugment_one_op_any_bin():
    seen = set()
    for seed in range(100):
        _, p = TrivialAugmentWide()(IMG, seed, record=True)
        assert len(p["ops"]) == 1
        seen.add(p["ops"][0][0])
    assert seen == set(PO.TRIVIALAUGMENT_SPACE)


def test_augmix_is_the_convex_mix_of_its_chains():
    t = AugMix(severity=3, mixture_width=3)
    s = Sample(IMG)
    out, p = t(s, 2, record=True)
    assert abs(sum(p["weights"]) - 1) < 1e-6 and 0 <= p["m"] <= 1
    assert all(1 <= len(c) <= 3 for c in p["chains"])
    chains = [
        PO._Policy.apply(t, s, {"ops": chain}).image.astype(np.float64) for chain in p["chains"]
    ]
    mix = sum(w * c for w, c in zip(p["weights"], chains))
    ref = p["m"] * IMG + (1 - p["m"]) * mix
    assert np.abs(out.image - ref).max() <= 1.0  # float32 sum, then truncation
    for name, m in (op for c in p["chains"] for op in c):
        bins = PO.magnitude_bins(PO.AUGMIX_SPACE, name, 10, *IMG.shape[:2])
        # severity 3: bins 0..2 only
        assert bins is None or any(abs(abs(m) - b) < 1e-6 for b in bins[:3])


@pytest.mark.parametrize(
    "t", [AutoAugment(), AutoAugment("cifar10"), RandAugment(), TrivialAugmentWide(), AugMix()]
)
def test_policies_deterministic_and_replayable(t):
    s = Sample(IMG, boxes=[[5, 5, 30, 30]], box_labels=[2])
    outs = [t(s, seed, record=True) for seed in (0, 0, 1)]
    assert np.array_equal(outs[0][0].image, outs[1][0].image)
    assert np.array_equal(t.replay(s, outs[0][1]).image, outs[0][0].image)
    different = [not np.array_equal(t(s, k).image, outs[0][0].image) for k in range(1, 6)]
    assert any(different)
