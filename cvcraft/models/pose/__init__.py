"""Human-pose networks; importing this package registers every module in it.

Contract (top-down heatmap models): ``model(x)`` with x float (N, 3, H, W) (one person per
crop) returns heatmaps (N, K, H / s, W / s); ``model.stride`` is s (4 for SimpleBaseline).

Bottom-up models (``bottom_up = True``, e.g. ``openpose_small``): ``model(x)`` with x a whole
image (N, 3, H, W) returns, in training, (heatmaps per stage, part affinity fields per stage),
lists of (N, K, H / s, W / s) and (N, 2L, H / s, W / s); in eval mode the last stage's pair.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
