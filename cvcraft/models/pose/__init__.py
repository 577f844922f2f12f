"""Human-pose networks; importing this package registers every module in it.

Contract (top-down heatmap models): ``model(x)`` with x float (N, 3, H, W) (one person per
crop) returns heatmaps (N, K, H / s, W / s); ``model.stride`` is s (4 for SimpleBaseline).
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
