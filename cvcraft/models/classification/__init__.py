"""Classification architectures; importing this package registers every module in it.

Each architecture is one file here; new files register themselves without an edit to this
package (their ``@register_model`` runs when the module is imported below).
"""

import importlib
import pkgutil

from cvcraft.models.classification.lenet import LeNet5
from cvcraft.models.classification.resnet import BasicBlock, Bottleneck, ResNet

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["BasicBlock", "Bottleneck", "LeNet5", "ResNet"]
