"""Learned and random augmentation policies: AutoAugment, RandAugment, TrivialAugmentWide,
AugMix. Registered: ``autoaugment``, ``randaugment``, ``trivialaugment_wide``, ``augmix``.

All four draw from one vocabulary of 15 ops (shear, translate, rotate, brightness, colour,
contrast, sharpness, posterize, solarize, autocontrast, equalize, invert, identity) whose
strength is a *magnitude bin* mapped to an op parameter by a table (``magnitude_bins``). The
tables and op semantics follow the papers as implemented by torchvision, so a policy means
the same thing here: shears are tan-angle factors about the top-left corner, translations
are pixels, rotations degrees (counter-clockwise), colour-type ops use factor 1 + m,
solarize's threshold is 255 * m. Geometric ops move boxes, masks and keypoints too.

The recorded params are the concrete list of (op, signed magnitude) pairs, so a replay
repeats the exact augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import photometric as P
from cvcraft.transforms.base import TRANSFORMS, Params, Transform
from cvcraft.transforms.functional import Fill
from cvcraft.transforms.geometric import Affine

Space = dict[str, tuple[Callable[[int, int, int], np.ndarray | None], bool]]


def _lin(lo: float, hi: float) -> Callable[[int, int, int], np.ndarray]:
    return lambda n, h, w: np.linspace(lo, hi, n, dtype=np.float32)


def _none(n: int, h: int, w: int) -> None:
    return None


def _posterize_bins(start: int, span: int) -> Callable[[int, int, int], np.ndarray]:
    """bits = start - round(i / ((n - 1) / span)) for bin i: fewer bits as magnitude grows."""
    return lambda n, h, w: (
        start - np.round(np.arange(n, dtype=np.float32) / np.float32((n - 1) / span))
    ).astype(np.int64)


# Op vocabulary per policy: name -> (bins(num_bins, height, width), signed).
_COLOR_OPS: Space = {
    "Brightness": (_lin(0.0, 0.9), True),
    "Color": (_lin(0.0, 0.9), True),
    "Contrast": (_lin(0.0, 0.9), True),
    "Sharpness": (_lin(0.0, 0.9), True),
}
AUTOAUGMENT_SPACE: Space = {
    "ShearX": (_lin(0.0, 0.3), True),
    "ShearY": (_lin(0.0, 0.3), True),
    # 150 px of translation on the 331 px images the policies were searched on
    "TranslateX": (lambda n, h, w: np.linspace(0.0, 150.0 / 331.0 * w, n, dtype=np.float32), True),
    "TranslateY": (lambda n, h, w: np.linspace(0.0, 150.0 / 331.0 * h, n, dtype=np.float32), True),
    "Rotate": (_lin(0.0, 30.0), True),
    **_COLOR_OPS,
    "Posterize": (_posterize_bins(8, 4), False),
    "Solarize": (_lin(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
    "Invert": (_none, False),
}
RANDAUGMENT_SPACE: Space = {
    "Identity": (_none, False),
    **{k: v for k, v in AUTOAUGMENT_SPACE.items() if k != "Invert"},
}
TRIVIALAUGMENT_SPACE: Space = {
    "Identity": (_none, False),
    "ShearX": (_lin(0.0, 0.99), True),
    "ShearY": (_lin(0.0, 0.99), True),
    "TranslateX": (_lin(0.0, 32.0), True),
    "TranslateY": (_lin(0.0, 32.0), True),
    "Rotate": (_lin(0.0, 135.0), True),
    "Brightness": (_lin(0.0, 0.99), True),
    "Color": (_lin(0.0, 0.99), True),
    "Contrast": (_lin(0.0, 0.99), True),
    "Sharpness": (_lin(0.0, 0.99), True),
    "Posterize": (_posterize_bins(8, 6), False),
    "Solarize": (_lin(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
AUGMIX_PARTIAL_SPACE: Space = {
    "ShearX": (_lin(0.0, 0.3), True),
    "ShearY": (_lin(0.0, 0.3), True),
    "TranslateX": (lambda n, h, w: np.linspace(0.0, w / 3.0, n, dtype=np.float32), True),
    "TranslateY": (lambda n, h, w: np.linspace(0.0, h / 3.0, n, dtype=np.float32), True),
    "Rotate": (_lin(0.0, 30.0), True),
    "Posterize": (_posterize_bins(4, 4), False),
    "Solarize": (_lin(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
AUGMIX_SPACE: Space = {**AUGMIX_PARTIAL_SPACE, **_COLOR_OPS}


def magnitude_bins(space: Space, name: str, num_bins: int, height: int, width: int):
    """The table of op parameters for bins 0..num_bins-1 (None for parameter-free ops)."""
    return space[name][0](num_bins, height, width)


_PHOTOMETRIC: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "Brightness": lambda x, m: P.adjust_brightness(x, 1.0 + m),
    "Color": lambda x, m: P.adjust_saturation(x, 1.0 + m),
    "Contrast": lambda x, m: P.adjust_contrast(x, 1.0 + m),
    "Sharpness": lambda x, m: P.adjust_sharpness(x, 1.0 + m),
    "Posterize": lambda x, m: P.posterize(x, int(m)),
    "Solarize": lambda x, m: P.solarize(x, 255.0 * m),
    "AutoContrast": lambda x, m: P.autocontrast(x),
    "Equalize": lambda x, m: P.equalize(x),
    "Invert": lambda x, m: P.invert(x),
}


def apply_op(
    sample: Sample,
    name: str,
    magnitude: float,
    *,
    interpolation: str = "nearest",
    fill: Fill = 0,
) -> Sample:
    """Apply one policy op with a concrete (already signed) magnitude.

    Geometric ops go through ``Affine`` so every target follows: ShearX m -> x' = x - m y
    (ShearY: y' = y - m x) about the image's top-left corner, as torchvision's
    ``affine(shear=degrees(atan(m)), center=[0, 0])``; Translate -> int(m) pixels; Rotate ->
    m degrees about the image centre, counter-clockwise.
    """
    if name == "Identity":
        return sample
    if name in _PHOTOMETRIC:
        return sample.replace(image=_PHOTOMETRIC[name](sample.image, magnitude))
    kw = {"fill": fill, "interpolation": interpolation, "min_area": 0.0}
    # torchvision's shear angle s maps x' = x - tan(s) y and its ops pass s = degrees(atan(m));
    # our affine_matrix shears x' = x + tan(s) y, hence the minus. Its centre [0, 0] is the
    # corner of pixel (0, 0), i.e. index coordinate (-0.5, -0.5).
    shear_deg = -math.degrees(math.atan(magnitude))
    if name == "ShearX":
        op = Affine(shear=(shear_deg, 0.0), center=(-0.5, -0.5), **kw)
    elif name == "ShearY":
        op = Affine(shear=(0.0, shear_deg), center=(-0.5, -0.5), **kw)
    elif name == "TranslateX":
        op = Affine(translate=(int(magnitude), 0), **kw)
    elif name == "TranslateY":
        op = Affine(translate=(0, int(magnitude)), **kw)
    elif name == "Rotate":
        op = Affine(angle=magnitude, **kw)
    else:
        raise ConfigError(f"unknown policy op {name!r}; known: {sorted(AUTOAUGMENT_SPACE)}")
    return op.apply(sample, op.make_params(sample, np.random.default_rng(0)))


class _Policy(Transform):
    """Shared by the policies: params are ``{"ops": [(name, magnitude), ...]}``."""

    def __init__(self, interpolation: str = "nearest", fill: Fill = 0, p: float = 1.0) -> None:
        super().__init__(p)
        self.interpolation, self.fill = interpolation, fill

    def _draw(
        self, space: Space, name: str, level: int, num_bins: int, sample: Sample, rng
    ) -> float:
        """The concrete magnitude of bin ``level``, with a random sign for signed ops."""
        bins = magnitude_bins(space, name, num_bins, sample.height, sample.width)
        if bins is None:
            return 0.0
        m = float(bins[level])
        if space[name][1] and rng.random() < 0.5:
            m = -m
        return m

    def apply(self, sample: Sample, params: Params) -> Sample:
        for name, magnitude in params["ops"]:
            sample = apply_op(
                sample, name, magnitude, interpolation=self.interpolation, fill=self.fill
            )
        return sample


# (op, probability, magnitude bin) pairs: the sub-policies found by the AutoAugment search
# (Cubuk et al. 2019, appendix tables), as distributed with torchvision.
AUTOAUGMENT_POLICIES: dict[str, list[tuple[tuple[str, float, int | None], ...]]] = {
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    "svhn": [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)),
        (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)),
        (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)),
        (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)),
        (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)),
        (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)),
        (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)),
        (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}


@TRANSFORMS.register("autoaugment")
class AutoAugment(_Policy):
    """AutoAugment (Cubuk et al. 2019): one of 25 searched sub-policies per image.

    A sub-policy is two (op, probability, magnitude bin) steps; each step runs with its
    probability at its bin of the 10-bin table. ``policy``: imagenet | cifar10 | svhn.
    """

    num_bins = 10

    def __init__(
        self,
        policy: str = "imagenet",
        interpolation: str = "nearest",
        fill: Fill = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(interpolation, fill, p)
        if policy not in AUTOAUGMENT_POLICIES:
            raise ConfigError(
                f"AutoAugment: unknown policy {policy!r}; use one of {list(AUTOAUGMENT_POLICIES)}"
            )
        self.policy = policy

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        table = AUTOAUGMENT_POLICIES[self.policy]
        index = int(rng.integers(len(table)))
        ops = []
        for name, prob, level in table[index]:
            if rng.random() <= prob:
                m = (
                    0.0
                    if level is None
                    else self._draw(AUTOAUGMENT_SPACE, name, level, self.num_bins, sample, rng)
                )
                ops.append((name, m))
        return {"policy_index": index, "ops": ops}


@TRANSFORMS.register("randaugment")
class RandAugment(_Policy):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` uniformly chosen ops (with replacement),
    all at magnitude bin ``magnitude`` of ``num_bins`` (default 9 of 31).

    ``random_magnitude=True`` draws each op's bin uniformly from 0..magnitude instead
    (the "random magnitude" variant of the paper's appendix / timm's ``mstd=inf``).
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_bins: int = 31,
        random_magnitude: bool = False,
        interpolation: str = "nearest",
        fill: Fill = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(interpolation, fill, p)
        if num_ops < 0 or not 0 <= magnitude < num_bins:
            raise ConfigError(
                f"RandAugment: need num_ops >= 0 and 0 <= magnitude < num_bins ({num_bins}), "
                f"got num_ops={num_ops}, magnitude={magnitude}"
            )
        self.num_ops, self.magnitude, self.num_bins = int(num_ops), int(magnitude), int(num_bins)
        self.random_magnitude = random_magnitude

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        names = list(RANDAUGMENT_SPACE)
        ops = []
        for _ in range(self.num_ops):
            name = names[int(rng.integers(len(names)))]
            level = int(rng.integers(self.magnitude + 1)) if self.random_magnitude else None
            level = self.magnitude if level is None else level
            ops.append(
                (name, self._draw(RANDAUGMENT_SPACE, name, level, self.num_bins, sample, rng))
            )
        return {"ops": ops}


@TRANSFORMS.register("trivialaugment_wide")
class TrivialAugmentWide(_Policy):
    """TrivialAugment (Müller & Hutter 2021), wide space: ONE uniformly chosen op at a
    uniformly chosen bin of ``num_bins`` (31). No hyper-parameters to tune."""

    def __init__(
        self, num_bins: int = 31, interpolation: str = "nearest", fill: Fill = 0, p: float = 1.0
    ) -> None:
        super().__init__(interpolation, fill, p)
        self.num_bins = int(num_bins)

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        names = list(TRIVIALAUGMENT_SPACE)
        name = names[int(rng.integers(len(names)))]
        level = int(rng.integers(self.num_bins))
        return {
            "ops": [
                (name, self._draw(TRIVIALAUGMENT_SPACE, name, level, self.num_bins, sample, rng))
            ]
        }


@TRANSFORMS.register("augmix")
class AugMix(_Policy):
    """AugMix (Hendrycks et al. 2020): a convex mix of ``mixture_width`` augmentation chains,
    blended with the original.

    w ~ Dirichlet(alpha, ..., alpha), m ~ Beta(alpha, alpha);
    out = m * x + (1 - m) * sum_i w_i chain_i(x). Each chain has ``chain_depth`` ops (random
    1-3 when -1), each at a bin drawn from 0..severity-1 of a 10-bin table; ``all_ops`` adds
    brightness/colour/contrast/sharpness (left out in the paper to avoid overlap with
    ImageNet-C). The mix is computed in float32 and truncated to uint8, as torchvision.
    Boxes and masks follow the *original* geometry (the mix is image-only): use it for
    classification.
    """

    num_bins = 10

    def __init__(
        self,
        severity: int = 3,
        mixture_width: int = 3,
        chain_depth: int = -1,
        alpha: float = 1.0,
        all_ops: bool = True,
        interpolation: str = "linear",
        fill: Fill = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(interpolation, fill, p)
        if not 1 <= severity <= self.num_bins or mixture_width < 1 or alpha <= 0:
            raise ConfigError(
                f"AugMix: need 1 <= severity <= 10, mixture_width >= 1, alpha > 0, got "
                f"{severity}, {mixture_width}, {alpha}"
            )
        self.severity, self.mixture_width = int(severity), int(mixture_width)
        self.chain_depth, self.alpha, self.all_ops = int(chain_depth), float(alpha), all_ops

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        space = AUGMIX_SPACE if self.all_ops else AUGMIX_PARTIAL_SPACE
        names = list(space)
        m = float(rng.beta(self.alpha, self.alpha))
        weights = rng.dirichlet([self.alpha] * self.mixture_width).tolist()
        chains = []
        for _ in range(self.mixture_width):
            depth = self.chain_depth if self.chain_depth > 0 else int(rng.integers(1, 4))
            chain = []
            for _ in range(depth):
                name = names[int(rng.integers(len(names)))]
                level = int(rng.integers(self.severity))
                chain.append((name, self._draw(space, name, level, self.num_bins, sample, rng)))
            chains.append(chain)
        return {"m": m, "weights": weights, "chains": chains}

    def apply(self, sample: Sample, params: Params) -> Sample:
        x = sample.image
        image_only = Sample(image=x)
        mix = np.zeros(x.shape, np.float32)
        for w, chain in zip(params["weights"], params["chains"]):
            aug = super().apply(image_only, {"ops": chain}).image
            mix += np.float32(w) * aug.astype(np.float32)
        m = np.float32(params["m"])
        out = m * x.astype(np.float32) + (np.float32(1) - m) * mix
        out = np.clip(out, 0, 255)
        return sample.replace(image=out.astype(x.dtype))


TRANSFORMS.register("trivial_augment", TrivialAugmentWide)
TRANSFORMS.register("rand_augment", RandAugment)
TRANSFORMS.register("auto_augment", AutoAugment)
