"""The served network: torchvision's ResNet34 with an eight-way head.

torch-model-archiver's eager mode imports this file and instantiates the one class it defines with
no arguments, so it must stay a single class with a no-argument constructor.
"""
from torchvision.models.resnet import BasicBlock, ResNet

RESNET34_LAYERS = [3, 4, 6, 3]
NUM_OUTPUTS = 8  # must equal len(contract.classes.CLASSES); checked by the tests and at load time


class SkinResNet34(ResNet):
    def __init__(self) -> None:
        super().__init__(BasicBlock, RESNET34_LAYERS, num_classes=NUM_OUTPUTS)
