"""Transform protocol, the geometric-op helper that keeps every target in step, and containers.

A transform draws all its randomness in ``make_params(sample, rng)`` and then applies those
parameters deterministically in ``apply(sample, params)``; ``__call__`` does both. Because
``apply`` is deterministic, recorded parameters replay to the identical output
(``t(sample, rng, record=True)`` -> ``(out, params)``, then ``t.replay(sample, params)``).

``GeometricTransform`` is the one place that knows about targets: an op implements a raster
kernel (image-like arrays) and a point map (continuous x, y), and the base class routes the
image, instance masks (nearest, fill 0), semantic mask (nearest, fill 255), boxes (the four
corners through the point map, then clip + filter) and keypoints (point map + visibility)
through them with the same parameters. A new geometric op cannot forget a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.registry import Registry
from cvcraft.structures import Sample, target_kind
from cvcraft.transforms import functional as F

TRANSFORMS: Registry = Registry("transform")

Params = dict[str, Any]
RngLike = np.random.Generator | int | Sequence[int] | None

_SKIPPED = "_skipped"  # params key marking "the probability test said no"


def as_rng(rng: RngLike) -> np.random.Generator:
    """A Generator from a Generator, a seed (int or int sequence) or None (fresh, unseeded)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_p(p: float, owner: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{owner}: probability p must be in [0, 1], got {p}")
    return float(p)


class Transform:
    """Base of every transform: ``make_params`` (random) then ``apply`` (deterministic).

    ``p`` is the probability the transform runs at all (one ``rng.random()`` draw, made only
    when p < 1); a skipped call records ``{"_skipped": True}`` so replay skips it too.
    Subclasses override ``make_params`` and ``apply``; containers override ``_run``.
    """

    def __init__(self, p: float = 1.0) -> None:
        self.p = _check_p(p, type(self).__name__)

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        """Draw this call's random parameters (default: none)."""
        return {}

    def apply(self, sample: Sample, params: Params) -> Sample:
        """Apply the given parameters; must not mutate ``sample``."""
        raise NotImplementedError

    def _run(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Params]:
        params = self.make_params(sample, rng)
        return self.apply(sample, params), params

    def forward(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Params]:
        """One random application -> (new sample, the params that produced it)."""
        if self.p < 1.0 and rng.random() >= self.p:
            return sample, {_SKIPPED: True}
        return self._run(sample, rng)

    def replay(self, sample: Sample, params: Params) -> Sample:
        """Re-apply recorded params (from ``record=True``) to get the identical output."""
        if params.get(_SKIPPED):
            return sample
        return self.apply(sample, params)

    def __call__(
        self, sample: Sample | np.ndarray, rng: RngLike = None, *, record: bool = False
    ) -> Any:
        """Run on a Sample (or a bare HWC image, returned as an image).

        ``rng``: a ``numpy.random.Generator`` (the pipeline's), a seed, or None for a fresh
        unseeded generator. With ``record=True`` returns ``(output, params)``.
        """
        bare = isinstance(sample, np.ndarray)
        s = Sample(image=sample) if bare else sample
        out, params = self.forward(s, as_rng(rng))
        result = out.image if bare else out
        return (result, params) if record else result

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class GeometricTransform(Transform):
    """A spatial op defined by a raster kernel and a point map; all targets follow it.

    Subclasses implement:
    - ``raster(x, params, *, interpolation, fill) -> array``: warp an HWC array. Called for
      the image (``self.interpolation``, ``self.fill``), instance masks (``"nearest"``, 0) and
      the semantic mask (``"nearest"``, 255 = ignore).
    - ``points(xy, params, in_size) -> xy'``: map (M, 2) continuous pixel coordinates.

    Boxes are mapped by their 4 corners, clipped, and dropped (with their ``box_labels``,
    ``masks`` rows and, when there is one keypoint row per box, ``keypoints`` rows) when the
    clipped area is 0, < ``min_area`` px^2, or visibility (clipped / unclipped area) <
    ``min_visibility``. Keypoints leaving the image get visibility 0.
    """

    interpolation: str = "linear"
    fill: F.Fill | str = 0
    # flips cannot push a box out of the image, so they never drop boxes
    can_drop_boxes: bool = True

    def __init__(self, p: float = 1.0, *, min_area: float = 1.0, min_visibility: float = 0.0):
        super().__init__(p)
        if min_area < 0 or not 0.0 <= min_visibility <= 1.0:
            raise ConfigError(
                f"{type(self).__name__}: need min_area >= 0 and 0 <= min_visibility <= 1, "
                f"got {min_area}, {min_visibility}"
            )
        self.min_area = float(min_area)
        self.min_visibility = float(min_visibility)

    def raster(
        self, x: np.ndarray, params: Params, *, interpolation: str, fill: F.Fill | str
    ) -> np.ndarray:
        raise NotImplementedError

    def points(self, xy: np.ndarray, params: Params, in_size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def keypoint_order(self, params: Params) -> Sequence[int] | None:
        """Re-ordering of the K keypoints after the op (left/right swap on a flip), or None."""
        return None

    def apply(self, sample: Sample, params: Params) -> Sample:
        in_size = (sample.height, sample.width)
        image = self.raster(sample.image, params, interpolation=self.interpolation, fill=self.fill)
        out_size = (int(image.shape[0]), int(image.shape[1]))
        changes: dict[str, Any] = {"image": image}

        def point_fn(xy: np.ndarray) -> np.ndarray:
            return self.points(xy, params, in_size)

        if sample.masks is not None:
            changes["masks"] = F.map_masks(
                np.asarray(sample.masks, dtype=bool),
                lambda m: self.raster(m, params, interpolation="nearest", fill=0),
            )
        if sample.semantic_mask is not None:
            sem = np.asarray(sample.semantic_mask)[..., None]
            changes["semantic_mask"] = self.raster(sem, params, interpolation="nearest", fill=255)[
                ..., 0
            ]
        if sample.keypoints is not None:
            kp = F.map_keypoints(sample.keypoints, point_fn, out_size)
            order = self.keypoint_order(params)
            changes["keypoints"] = kp[:, list(order)] if order is not None else kp
        if sample.boxes is not None:
            moved = F.map_boxes(sample.boxes, point_fn)
            if self.can_drop_boxes:
                boxes, keep = F.filter_boxes(
                    moved, out_size, min_area=self.min_area, min_visibility=self.min_visibility
                )
            else:
                boxes, keep = moved, np.ones(len(moved), dtype=bool)
            changes["boxes"] = boxes[keep]
            changes["box_labels"] = sample.box_labels[keep]
            if "masks" in changes:
                changes["masks"] = changes["masks"][keep]
            # keypoints carry one row per instance in pose data; drop them with their box
            if "keypoints" in changes and len(changes["keypoints"]) == len(keep):
                changes["keypoints"] = changes["keypoints"][keep]
        if sample.extras:
            kept = keep if sample.boxes is not None else None
            changes["extras"] = self._apply_extras(sample, params, point_fn, out_size, kept)
        return sample.replace(**changes)

    def _apply_extras(
        self,
        sample: Sample,
        params: Params,
        point_fn: Any,
        out_size: tuple[int, int],
        kept: np.ndarray | None,
    ) -> dict[str, Any]:
        """Move every extra target by its registered kind: images like the image, masks
        with nearest/255, points like keypoints (their rows dropped with dropped boxes)."""
        out = {}
        for name, value in sample.extras.items():
            kind = target_kind(name)
            if kind == "image":
                v = np.asarray(value)
                hwc = v if v.ndim == 3 else v[..., None]
                moved = self.raster(hwc, params, interpolation=self.interpolation, fill=self.fill)
                out[name] = moved if v.ndim == 3 else moved.reshape(moved.shape[:2])
            elif kind == "mask":
                m = np.asarray(value)[..., None]
                out[name] = self.raster(m, params, interpolation="nearest", fill=255)[..., 0]
            elif kind == "points":
                kp = F.map_keypoints(value, point_fn, out_size)
                order = self.keypoint_order(params)
                kp = kp[:, list(order)] if order is not None else kp
                if kept is not None and len(kp) == len(kept):
                    kp = kp[kept]  # one row per box: dropped with its box
                out[name] = kp
            else:
                out[name] = value
        return out


class Compose(Transform):
    """Run transforms in order; the recorded params are ``{"steps": [params per step]}``.

    Each step draws its params from the sample the previous step produced (a crop size
    depends on the image size), so Compose samples lazily rather than all up front.
    """

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0) -> None:
        super().__init__(p)
        self.transforms = list(transforms)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise ConfigError(f"Compose expects Transform objects, got {type(t).__name__}")

    def _run(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Params]:
        steps = []
        for t in self.transforms:
            sample, params = t.forward(sample, rng)
            steps.append(params)
        return sample, {"steps": steps}

    def apply(self, sample: Sample, params: Params | Sequence[Params]) -> Sample:
        steps = params["steps"] if isinstance(params, dict) else list(params)
        if len(steps) != len(self.transforms):
            raise ConfigError(
                f"replay: {len(steps)} recorded steps for a Compose of {len(self.transforms)}"
            )
        for t, p in zip(self.transforms, steps):
            sample = t.replay(sample, p)
        return sample

    def replay(self, sample: Sample, params: Params | Sequence[Params]) -> Sample:
        """Replay ``{"steps": [...]}`` or the bare list of per-step params."""
        if isinstance(params, dict) and params.get(_SKIPPED):
            return sample
        return self.apply(sample, params)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]

    def __repr__(self) -> str:
        body = "".join(f"\n  {t!r}," for t in self.transforms)
        return f"Compose([{body}\n])"


class RandomApply(Transform):
    """Apply ``transform`` with probability ``p`` (the ``p`` of the wrapper, not the inner)."""

    def __init__(self, transform: Transform, p: float = 0.5) -> None:
        super().__init__(p)
        self.transform = transform

    def _run(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Params]:
        out, inner = self.transform.forward(sample, rng)
        return out, {"params": inner}

    def apply(self, sample: Sample, params: Params) -> Sample:
        return self.transform.replay(sample, params["params"])


class OneOf(Transform):
    """Apply exactly one of ``transforms``, chosen with ``weights`` (uniform by default)."""

    def __init__(
        self,
        transforms: Sequence[Transform],
        weights: Sequence[float] | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.transforms = list(transforms)
        if not self.transforms:
            raise ConfigError("OneOf needs at least one transform")
        w = np.ones(len(self.transforms)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(self.transforms),) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"OneOf: weights {weights} must be one non-negative per transform")
        self.weights = (w / w.sum()).tolist()

    def _run(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Params]:
        i = int(rng.choice(len(self.transforms), p=self.weights))
        out, inner = self.transforms[i].forward(sample, rng)
        return out, {"index": i, "params": inner}

    def apply(self, sample: Sample, params: Params) -> Sample:
        return self.transforms[params["index"]].replay(sample, params["params"])


class SomeOf(Transform):
    """Apply ``n`` distinct transforms drawn from ``transforms`` (RandAugment-style stacking).

    ``n`` is an int or an inclusive (min, max) range drawn once per call. The chosen ops run
    in the drawn (random) order, or in list order with ``keep_order=True``. Each chosen op
    still rolls its own ``p``, which is the per-op probability of the issue's "SomeOf".
    """

    def __init__(
        self,
        transforms: Sequence[Transform],
        n: int | Sequence[int] = 1,
        keep_order: bool = False,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.transforms = list(transforms)
        lo, hi = (int(n), int(n)) if np.isscalar(n) else (int(n[0]), int(n[1]))
        if not self.transforms or not 0 <= lo <= hi <= len(self.transforms):
            raise ConfigError(
                f"SomeOf: need 0 <= n_min <= n_max <= {len(self.transforms)} transforms, got n={n}"
            )
        self.n = (lo, hi)
        self.keep_order = bool(keep_order)

    def _run(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Params]:
        k = int(rng.integers(self.n[0], self.n[1] + 1))
        idx = rng.choice(len(self.transforms), size=k, replace=False)
        if self.keep_order:
            idx = np.sort(idx)
        steps = []
        for i in idx.tolist():
            sample, params = self.transforms[i].forward(sample, rng)
            steps.append(params)
        return sample, {"indices": idx.tolist(), "params": steps}

    def apply(self, sample: Sample, params: Params) -> Sample:
        for i, p in zip(params["indices"], params["params"]):
            sample = self.transforms[i].replay(sample, p)
        return sample


TRANSFORMS.register("compose", Compose)
TRANSFORMS.register("some_of", SomeOf)
TRANSFORMS.register("random_apply", RandomApply)
TRANSFORMS.register("one_of", OneOf)
