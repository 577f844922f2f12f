"""build_transforms from specs; the standard classification pipelines."""

import numpy as np
import pytest

from cvcraft.errors import ConfigError, RegistryError
from cvcraft.structures import Sample
from cvcraft.transforms import (
    TRANSFORMS,
    CenterCrop,
    Compose,
    Cutout,
    HorizontalFlip,
    HSVJitter,
    PadRandomCrop,
    RandomAffine,
    RandomResizedCrop,
    Resize,
    build_transforms,
    default_classify_transforms,
)


def test_build_from_dict_spec():
    spec = [
        {"name": "random_resized_crop", "size": 24, "scale": [0.5, 1.0]},
        "hflip",
        {"name": "random_apply", "p": 0.5, "transform": {"name": "hsv", "h": 0.01}},
        {"name": "one_of", "transforms": ["vflip", {"name": "cutout", "size": 4}]},
        {"name": "normalize", "stats": "imagenet"},
    ]
    t = build_transforms(spec)
    assert isinstance(t, Compose) and len(t) == 5
    assert (
        isinstance(t[0], RandomResizedCrop) and t[0].scale == (0.5, 1.0) and t[0].size == (24, 24)
    )
    assert isinstance(t[1], HorizontalFlip) and t[1].p == 0.5
    assert t[2].transform.h == 0.01 and isinstance(t[3].transforms[1], Cutout)
    out = t(np.zeros((40, 30, 3), np.uint8), 0)
    assert out.shape == (24, 24, 3) and out.dtype == np.float32
    assert {"resize", "center_crop", "pad_random_crop", "random_affine", "random_rotation"} <= set(
        TRANSFORMS.names()
    )


def test_unknown_name_and_argument():
    with pytest.raises(RegistryError, match='Did you mean "hflip"'):
        build_transforms([{"name": "hfilp"}])
    with pytest.raises(ConfigError, match="Did you mean 'scale'|Did you mean \"scale\""):
        build_transforms([{"name": "random_resized_crop", "size": 8, "scael": [0.1, 1]}])
    with pytest.raises(ConfigError, match="size"):
        build_transforms(["center_crop"])  # missing required argument


def test_default_train_pipelines():
    rrc = default_classify_transforms(224, True, hsv=(0.015, 0.7, 0.4), degrees=10, cutout=0.5)
    kinds = [type(t) for t in rrc]
    assert kinds == [RandomResizedCrop, HorizontalFlip, RandomAffine, HSVJitter, Cutout]
    small = default_classify_transforms(32, True)
    assert [type(t) for t in small] == [Resize, PadRandomCrop, HorizontalFlip]
    assert [type(t) for t in default_classify_transforms(32, True, crop="rrc")][
        0
    ] is RandomResizedCrop
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert small(img, 0).shape == (32, 32, 3)
    assert rrc(np.zeros((300, 400, 3), np.uint8), 0).shape == (224, 224, 3)
    with pytest.raises(ConfigError, match="crop must be 'rrc', 'pad' or 'auto', got 'random'"):
        default_classify_transforms(32, True, crop="random")


def test_default_val_pipeline_geometry():
    t = default_classify_transforms(224, False)
    assert [type(x) for x in t] == [Resize, CenterCrop]
    # 300x400: shorter side -> 256 (224 / 0.875), long side 341, then the central 224 window
    s = Sample(np.zeros((300, 400, 3), np.uint8), boxes=[[0, 0, 400, 300]])
    out = t(s, 0)
    assert out.image.shape == (224, 224, 3)
    assert t[0].output_size(300, 400) == (256, 341)
    np.testing.assert_allclose(out.boxes, [[0, 0, 224, 224]])
    # small images: a straight resize, nothing cut off
    tiny = default_classify_transforms(32, False)
    s = Sample(np.zeros((28, 28, 3), np.uint8), boxes=[[0, 0, 28, 28]])
    out = tiny(s, 0)
    assert out.image.shape == (32, 32, 3)
    np.testing.assert_allclose(out.boxes, [[0, 0, 32, 32]])
