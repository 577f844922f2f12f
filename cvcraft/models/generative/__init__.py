"""Generative models; importing this package registers every module in it.

Contract: a registered constructor ``fn(num_classes, in_chans, img_size=..., **kw)`` returns
a module with ``family`` ("gan": ``.generator`` + ``.discriminator``) and
``default_input_size`` (C, H, W). Generated images are float in [-1, 1].
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
