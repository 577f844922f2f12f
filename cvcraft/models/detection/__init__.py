"""Detection architectures; importing this package registers every module in it.

Every detector keeps the contract in ``base.py`` (forward / loss / postprocess), so the
detection task trains, evaluates and runs any of them the same way.
"""

import importlib
import pkgutil

from cvcraft.models.detection.base import Detector

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Detector"]
