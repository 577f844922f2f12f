"""Semantic segmentation architectures; importing this package registers every module in it.

Contract: ``model(x)`` with x float (N, C_in, H, W) returns logits (N, num_classes, H, W) at
the input resolution. In training mode a model with auxiliary / deep-supervision outputs
returns ``(main_logits, [aux_logits, ...])``, every tensor at the input resolution.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
