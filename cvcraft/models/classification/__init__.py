"""Classification architectures; importing this package registers them."""

from cvcraft.models.classification import lenet, resnet
from cvcraft.models.classification.lenet import LeNet5
from cvcraft.models.classification.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["BasicBlock", "Bottleneck", "LeNet5", "ResNet", "lenet", "resnet"]
