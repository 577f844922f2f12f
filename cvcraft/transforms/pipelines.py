"""Build pipelines by name (``build_transforms``) and the standard classification recipes.

Decisions in ``default_classify_transforms`` (documented here because they change results):

- train, ``crop="rrc"``: RandomResizedCrop(imgsz, scale, ratio) — the ImageNet recipe.
  ``crop="pad"``: resize to imgsz if needed, then pad 4 + random crop — the CIFAR recipe,
  for small images where RRC's 8 % crops leave too few pixels to recognise anything.
  ``crop="auto"`` picks "pad" when imgsz <= 64, else "rrc".
- then horizontal/vertical flips, an optional single-warp RandomAffine (only if any of
  degrees/translate/affine_scale/shear is non-zero), an optional policy (``policy``:
  "autoaugment" / "autoaugment:cifar10" / "randaugment" / "trivialaugment" / "augmix"),
  optional HSV jitter (if any gain > 0), optional Cutout (with probability ``cutout``) and
  optional Random Erasing (with probability ``erasing``), erasing last as in timm.
- val: resize the shorter side to imgsz / crop_pct (0.875: 224 -> 256) and centre-crop
  imgsz; for imgsz <= 64 a straight resize to (imgsz, imgsz) instead, since cutting 12 % off
  a 32 px image removes real content.
- Normalization is not included: the trainer runs ``Normalizer`` on the device.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from cvcraft.errors import ConfigError
from cvcraft.registry import did_you_mean

# importing these modules registers their transforms under their snake_case names
from cvcraft.transforms import copy_paste, letterbox, mosaic, photometric, policies  # noqa: F401
from cvcraft.transforms.base import TRANSFORMS, Compose, Transform
from cvcraft.transforms.color import HSVJitter
from cvcraft.transforms.erase import Cutout, RandomErasing
from cvcraft.transforms.geometric import (
    CenterCrop,
    HorizontalFlip,
    PadRandomCrop,
    RandomAffine,
    RandomResizedCrop,
    Resize,
    VerticalFlip,
)
from cvcraft.transforms.multi_sample import MULTI_SAMPLE, MultiSampleTransform, build_multi_sample

Spec = str | Mapping[str, Any] | Transform

_CONTAINERS = {"compose", "one_of", "some_of"}  # take a list of child specs under "transforms"


def _accepted_args(cls: type) -> list[str]:
    """Keyword names ``cls(...)`` accepts, following ``**kwargs`` up to the parent __init__."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names += [
            k
            for k, p in params.items()
            if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and k not in names
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names


def _build_one(spec: Spec, where: str) -> Transform:
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{where}: expected a transform name or a dict with 'name', got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    cls = TRANSFORMS.get(name)  # RegistryError with a did-you-mean on a typo
    if name in _CONTAINERS:
        kwargs["transforms"] = [
            _build_one(s, f"{where}.transforms[{i}]")
            for i, s in enumerate(kwargs.get("transforms", []))
        ]
    elif name == "random_apply":
        kwargs["transform"] = _build_one(kwargs.get("transform"), f"{where}.transform")
    valid = _accepted_args(cls)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(
            f"{where}: transform {name!r} has no argument {unknown[0]!r}."
            f"{did_you_mean(unknown[0], valid)} Valid: {', '.join(valid)}"
        )
    try:
        return cls(**kwargs)
    except TypeError as e:  # e.g. a missing required argument
        raise ConfigError(f"{where}: cannot build {name!r}: {e}") from None


def build_transforms(spec: Sequence[Spec] | Spec) -> Compose:
    """A Compose from a list of names / ``{"name": ..., **kwargs}`` dicts / Transform objects.

    Example: ``build_transforms(["hflip", {"name": "random_resized_crop", "size": 224}])``.
    ``compose``/``one_of``/``some_of`` take ``transforms: [...]`` and ``random_apply`` a
    ``transform``. ``TRANSFORMS.names()`` lists every registered name.
    Unknown names raise RegistryError with a did-you-mean; unknown arguments ConfigError.
    """
    if isinstance(spec, (str, Mapping, Transform)):
        spec = [spec]
    return Compose([_build_one(s, f"transforms[{i}]") for i, s in enumerate(spec)])


def default_classify_transforms(
    imgsz: int,
    train: bool,
    *,
    crop: str = "auto",
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    padding: int = 4,
    pad_fill: float | str = 0,
    hflip: float = 0.5,
    vflip: float = 0.0,
    degrees: float = 0.0,
    translate: float = 0.0,
    affine_scale: float | Sequence[float] = 0.0,
    shear: float = 0.0,
    hsv: Sequence[float] = (0.0, 0.0, 0.0),
    cutout: float = 0.0,
    cutout_size: float = 0.5,
    crop_pct: float = 0.875,
    interpolation: str = "auto",
    policy: str | None = None,
    erasing: float = 0.0,
) -> Compose:
    """The standard train/val classification pipelines (see the module docstring).

    ``cutout`` is the probability of one hole of ``cutout_size`` (fraction of the shorter
    side); ``hsv`` = (h, s, v) gains; ``affine_scale`` is RandomAffine's ``scale``.
    """
    if imgsz <= 0 or not 0 < crop_pct <= 1:
        raise ConfigError(f"need imgsz > 0 and 0 < crop_pct <= 1, got {imgsz}, {crop_pct}")
    if not train:
        if imgsz <= 64:
            return Compose([Resize(imgsz, interpolation=interpolation)])
        return Compose(
            [
                Resize(int(imgsz / crop_pct), keep_ratio=True, interpolation=interpolation),
                CenterCrop(imgsz),
            ]
        )
    if crop == "auto":
        crop = "pad" if imgsz <= 64 else "rrc"
    steps: list[Transform]
    if crop == "rrc":
        steps = [RandomResizedCrop(imgsz, scale, ratio, interpolation=interpolation)]
    elif crop == "pad":
        steps = [
            Resize(imgsz, interpolation=interpolation),
            PadRandomCrop(imgsz, padding, pad_fill),
        ]
    else:
        raise ConfigError(f"crop must be 'rrc', 'pad' or 'auto', got {crop!r}")
    if hflip > 0:
        steps.append(HorizontalFlip(hflip))
    if vflip > 0:
        steps.append(VerticalFlip(vflip))
    has_scale = any(affine_scale) if isinstance(affine_scale, Sequence) else affine_scale > 0
    if degrees or translate or shear or has_scale:
        steps.append(RandomAffine(degrees, translate, affine_scale, shear))
    if policy:
        steps.append(_policy(policy))
    if any(g > 0 for g in hsv):
        steps.append(HSVJitter(*hsv))
    if cutout > 0:
        steps.append(Cutout(1, cutout_size, p=cutout))
    if erasing > 0:
        steps.append(RandomErasing(p=erasing))
    return Compose(steps)


def _policy(name: str) -> Transform:
    """ "autoaugment[:imagenet|cifar10|svhn]", "randaugment", "trivialaugment" or "augmix"."""
    kind, _, variant = name.partition(":")
    if kind == "autoaugment":
        return policies.AutoAugment(variant or "imagenet")
    makers = {
        "randaugment": policies.RandAugment,
        "trivialaugment": policies.TrivialAugmentWide,
        "augmix": policies.AugMix,
    }
    if kind not in makers or variant:
        raise ConfigError(
            f"policy {name!r} is unknown; use autoaugment[:imagenet|cifar10|svhn], "
            "randaugment, trivialaugment or augmix"
        )
    return makers[kind]()


# ----------------------------------------------------------------------------- augment: lists
def sized_spec(spec: Sequence[Any], imgsz: int) -> list[Any]:
    """An ``augment:`` list with ``size: imgsz`` filled in for Mosaic entries that omit it,
    so ``[mosaic, ...]`` in a config means a mosaic at the training size."""
    out: list[Any] = []
    for item in spec:
        entry = {"name": item} if isinstance(item, str) else dict(item or {})
        if entry.get("name") == "mosaic":
            entry.setdefault("size", int(imgsz))
        out.append(entry)
    return out


def split_pipeline(
    spec: Sequence[str | dict[str, Any]], where: str = "augment"
) -> tuple[list[MultiSampleTransform], Compose]:
    """An ``augment:`` list -> (multi-sample steps, per-item Compose of the rest).

    Multi-sample entries (``mosaic``, ``mixup``, ``copy_paste``) must come first: they build
    the image the per-item transforms then work on (YOLOv5's order: mosaic, then affine...).
    """
    multi: list[MultiSampleTransform] = []
    single: list[Any] = []
    for i, item in enumerate(spec):
        name = item if isinstance(item, str) else (item or {}).get("name")
        if name in MULTI_SAMPLE:
            if single:
                raise ConfigError(
                    f"{where}[{i}] ({name}) combines several images and must come before the "
                    "per-image transforms"
                )
            multi.append(build_multi_sample(item))
        else:
            single.append(item)
    return multi, build_transforms(single)
