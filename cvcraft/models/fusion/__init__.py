"""Infrared-visible image-fusion networks; importing this package registers every module.

Contract: ``model(x)`` with x float (N, 2, H, W) in [0, 1], channel 0 the infrared image and
channel 1 the visible image's luma (Y), returns the fused luma (N, 1, H, W) in [0, 1] at the
input resolution. Colour is restored outside the model (the visible Cb, Cr are kept).
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
