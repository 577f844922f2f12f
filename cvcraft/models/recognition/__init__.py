"""Text recognition networks (CRNN + CTC) and CTC decoding; importing this package
registers every model.

Contract: ``model(x)`` with x float (B, C, H, W) returns per-frame log-probabilities
(T, B, num_classes + 1), class 0 the CTC blank, label k at class k + 1.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
