"""Augmentation engine: numpy kernels, transforms that move every target together,
registry-built pipelines, normalization and label encodings.

    from cvcraft.transforms import build_transforms, default_classify_transforms
    t = default_classify_transforms(224, train=True)
    out = t(sample, np.random.default_rng([seed, epoch, index]))
"""

from cvcraft.transforms import functional
from cvcraft.transforms.base import (
    TRANSFORMS,
    Compose,
    GeometricTransform,
    OneOf,
    RandomApply,
    Transform,
    as_rng,
)
from cvcraft.transforms.color import HSVJitter
from cvcraft.transforms.erase import Cutout
from cvcraft.transforms.geometric import (
    CenterCrop,
    HorizontalFlip,
    PadRandomCrop,
    RandomAffine,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    VerticalFlip,
    sample_rrc_window,
)
from cvcraft.transforms.labels import one_hot, smooth_labels
from cvcraft.transforms.normalize import (
    IMAGENET_STATS,
    Normalize,
    Normalizer,
    compute_stats,
    denormalize,
)
from cvcraft.transforms.pipelines import build_transforms, default_classify_transforms

__all__ = [
    "TRANSFORMS",
    "IMAGENET_STATS",
    "CenterCrop",
    "Compose",
    "Cutout",
    "GeometricTransform",
    "HSVJitter",
    "HorizontalFlip",
    "Normalize",
    "Normalizer",
    "OneOf",
    "PadRandomCrop",
    "RandomAffine",
    "RandomApply",
    "RandomResizedCrop",
    "RandomRotation",
    "Resize",
    "Transform",
    "VerticalFlip",
    "as_rng",
    "build_transforms",
    "compute_stats",
    "default_classify_transforms",
    "denormalize",
    "functional",
    "one_hot",
    "sample_rrc_window",
    "smooth_labels",
]
