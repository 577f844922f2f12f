"""The model registry: build any architecture by name, as the CLI and YAML configs do.

A model is registered as a small constructor ``fn(num_classes=1000, in_chans=3, **kw) ->
nn.Module`` (timm style), so one configurable class serves many named variants.
``create_model("resnet50", num_classes=10)`` looks the name up and calls it.

Registration also records, per model: other names it answers to (torchvision's ``vit_b_16``
for ``vit_base_patch16_224``), its default config (input size, normalization, recommended
optimizer and learning rate; ``model_default_cfg``), and the converter that renames a
torchvision twin's state_dict to its keys, so ``create_model(name, weights=PATH)`` loads
torchvision and cvcraft files alike (``cvcraft.models.weights``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError, RegistryError
from cvcraft.models.features import FeatureListNet
from cvcraft.models.weights import load_weights
from cvcraft.registry import Registry, did_you_mean

ModelFn = Callable[..., nn.Module]
Converter = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What every model of a task starts from; a registration overrides any of these keys.
# ``mean``/``std`` are in 0-1 pixel units; "dataset" means: measure them on the training
# data (``cvcraft.transforms.normalize``). ``lr`` is for the optimizer named beside it at
# the model's usual batch size (see the model's docstring for the source of the recipe).
# A model package's defaults where a registration says nothing (keyed by models package; the
# task registry maps packages to tasks).
_PACKAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                 "optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4},
    "detection": {"input_size": (3, 640, 640), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
               "optimizer": "adamw", "lr": 0.002, "weight_decay": 5e-4},
    "segmentation": {"input_size": (3, 512, 512), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                "optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4},
    # generators output tanh images in [-1, 1]: x = (pixel - 0.5) / 0.5
    "generative": {"input_size": (1, 28, 28), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                "optimizer": "adam", "lr": 2e-4, "weight_decay": 0.0},
}  # fmt: skip


class ModelRegistry(Registry[ModelFn]):
    """A :class:`Registry` whose lookups also accept aliases; ``names`` lists canonical names."""

    def __init__(self) -> None:
        super().__init__("model")
        self.aliases: dict[str, str] = {}
        self.default_cfgs: dict[str, dict[str, Any]] = {}
        self.tv_converters: dict[str, Converter | None] = {}

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself, or what the alias points to)."""
        return self.aliases.get(name, name)

    def get(self, name: str) -> ModelFn:
        name = self.canonical(name)
        if name not in self._items:
            known = list(self._items) + list(self.aliases)
            raise RegistryError(
                f"unknown model {name!r}.{did_you_mean(name, known)} "
                f"Known: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) in self._items

    def add_alias(self, alias: str, name: str) -> None:
        """Let ``alias`` build model ``name``; an alias may not shadow or repeat a name."""
        if alias in self._items or self.aliases.get(alias, name) != name:
            raise RegistryError(f"model alias {alias!r} is already a model or another alias")
        self.aliases[alias] = name


MODELS = ModelRegistry()


def register_model(
    name: str | None = None,
    *,
    aliases: Sequence[str] = (),
    default_cfg: Mapping[str, Any] | None = None,
    tv_twin: str | None = None,
    tv_converter: Converter | None = None,
) -> Callable[[ModelFn], ModelFn]:
    """Decorator registering a model constructor under ``name`` (default: the function name).

    ``aliases``: other names ``create_model`` accepts (not listed by ``list_models``).
    ``default_cfg``: keys overriding the task defaults (``model_default_cfg``).
    ``tv_twin``: the torchvision constructor with the same layers (``"vit_b_16"``);
    ``tv_converter``: renames its state_dict to ours (None: the keys are already ours).
    """

    def deco(fn: ModelFn) -> ModelFn:
        key = name or fn.__name__
        MODELS.register(key, fn)
        for a in aliases:
            MODELS.add_alias(a, key)
        cfg = dict(default_cfg or {})
        if tv_twin is not None:
            cfg["tv_twin"] = tv_twin
            MODELS.tv_converters[key] = tv_converter
        MODELS.default_cfgs[key] = cfg
        return fn

    return deco


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    *,
    weights: str | Path | Mapping[str, Any] | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name`` (or an alias of it).

    ``weights``: a file (cvcraft checkpoint with ``model``/``ema``, or a bare state_dict,
    ours or the torchvision twin's) or an already-loaded dict; see
    :func:`cvcraft.models.weights.load_weights`. ``features_only``: return the trunk as a
    :class:`~cvcraft.models.features.FeatureListNet` giving the maps at ``out_indices``.

    ``num_classes`` / ``in_chans`` left at None take the constructor's defaults (1000 for
    ImageNet classifiers, 10 for the CIFAR ones, 90 for Faster R-CNN, ...).

    Unknown names raise ``RegistryError`` with the closest match; options the model does
    not take raise ``ConfigError`` naming the option and the model's signature.
    """
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    canonical = MODELS.canonical(name)
    fn = MODELS.get(name)
    if out_indices is not None and not features_only:
        raise ConfigError(f"out_indices={tuple(out_indices)} needs features_only=True")
    try:
        model = fn(**kwargs)
    except TypeError as e:
        # Only an argument-binding error about one of the *user's* keys is a config problem;
        # any other TypeError is a bug and propagates unchanged.
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m is None or m.group(1) not in kwargs:
            raise
        raise ConfigError(
            f"model {name!r} does not accept option {m.group(1)!r}. Remove it or fix its "
            f"spelling; {canonical} is {fn.__module__}.{fn.__name__}{inspect.signature(fn)} "
            f"(see that module's model class for the options **kw forwards)"
        ) from None
    if weights is not None:
        load_weights(model, weights, tv_converter=tv_converter(canonical), model_name=canonical)
    if features_only:
        model = FeatureListNet(model, out_indices)
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Sorted canonical names of registered models matching a shell-style ``pattern``."""
    return MODELS.names(pattern)


def list_aliases() -> dict[str, str]:
    """Every alias and the registered name it builds (``{"vit_b_16": "vit_base_patch16_224"}``)."""
    return dict(sorted(MODELS.aliases.items()))


def model_package(name: str) -> str:
    """The ``cvcraft.models.<package>`` a registered model's constructor lives in
    (``classification``, ``detection``, ...; "" for models registered elsewhere). The task
    registry maps packages to tasks (``cvcraft.tasks.model_task``)."""
    module = getattr(MODELS.get(name), "__module__", "")
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["cvcraft", "models"] else ""


def model_default_cfg(name: str) -> dict[str, Any]:
    """A model's defaults: ``package`` (its models sub-package), ``input_size`` (C, H, W),
    ``mean``/``std`` (0-1 units, or "dataset"), ``optimizer``, ``lr``, ``weight_decay`` and,
    with a torchvision twin, ``tv_twin``; the package's defaults where the registration says
    nothing.

    ``input_size`` is the model's own ``default_input_size`` (read once from an instance
    built on the meta device, which allocates nothing), so the two cannot disagree.
    """
    canonical = MODELS.canonical(name)
    fn = MODELS.get(name)  # unknown name -> RegistryError
    package = model_package(canonical)
    defaults = _PACKAGE_DEFAULTS.get(package, _PACKAGE_DEFAULTS["classification"])
    cfg = {"package": package, **defaults, **MODELS.default_cfgs.get(canonical, {})}
    if canonical not in _INPUT_SIZES:
        with torch.random.fork_rng(devices=[]):  # reading a default must not move the RNG
            try:
                with torch.device("meta"):
                    size = getattr(fn(), "default_input_size", None)
            except (RuntimeError, NotImplementedError):  # a constructor that reads values
                size = getattr(fn(), "default_input_size", None)
        _INPUT_SIZES[canonical] = tuple(size) if size is not None else None
    if _INPUT_SIZES[canonical] is not None:
        cfg["input_size"] = _INPUT_SIZES[canonical]
    return cfg


_INPUT_SIZES: dict[str, tuple[int, ...] | None] = {}


def tv_converter(name: str) -> Converter | None:
    """The registered torchvision-key converter of model ``name`` (None: keys are ours)."""
    return MODELS.tv_converters.get(MODELS.canonical(name))


def model_info(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``{"params": total, "trainable": requiring grad}``."""
    params = list(model.parameters())
    return {
        "params": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }
