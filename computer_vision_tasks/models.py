"""CIFAR ResNets (resnet8 ... resnet110) and plain CNNs (plane2 ... plane10) of the paper, with the
layer names of the original code (Mirzadeh et al.'s TAKD repository: its checkpoints load), for
any ``in_channels`` and input size (the plain CNNs size their first FC layer from ``image_size``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import UsageError

# depth = 6n + 2: n BasicBlocks in each of the three stages (16, 32, 64 channels)
RESNET_BLOCKS = {"resnet8": 1, "resnet14": 2, "resnet20": 3, "resnet26": 4, "resnet32": 5,
                 "resnet44": 7, "resnet56": 9, "resnet110": 18}

# The original plane CNNs' layers (split on spaces); the last FC is the classifier.
PLANE_10 = {
    "plane2": "Conv16 MaxPool Conv16 MaxPool FC",
    "plane4": "Conv16 Conv16 MaxPool Conv32 Conv32 MaxPool FC",
    "plane6": "Conv16 Conv16 MaxPool Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool FC",
    "plane8": "Conv16 Conv16 MaxPool Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool Conv128 Conv128 "
              "MaxPool FC64 FC",
    "plane10": "Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool Conv128 Conv128 MaxPool Conv256 "
               "Conv256 Conv256 Conv256 MaxPool FC128 FC",
}
PLANE_100 = {
    "plane2": "Conv32 MaxPool Conv32 MaxPool FC",
    "plane4": "Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool FC",
    "plane6": "Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool Conv128 Conv128 FC",
    "plane8": "Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool Conv128 Conv128 MaxPool Conv256 Conv256 "
              "MaxPool FC64 FC",
    "plane10": "Conv32 Conv32 MaxPool Conv64 Conv64 MaxPool Conv128 Conv128 MaxPool Conv256 "
               "Conv256 Conv256 Conv256 MaxPool FC512 FC",
}
MODEL_NAMES = [*RESNET_BLOCKS, *PLANE_10]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; a 1x1 conv + BN projection when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetCifar(nn.Module):
    """He et al.'s CIFAR ResNet: a 3x3 stem, three stages of ``blocks`` BasicBlocks, a head."""

    def __init__(self, blocks: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, 16, blocks, 1)
        self.layer2 = self._stage(16, 32, blocks, 2)
        self.layer3 = self._stage(32, 64, blocks, 2)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # normal(0, sqrt(2 / (k*k*out))) as the original
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride),
                             *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        # the original's AvgPool2d(8) for any size (AdaptiveAvgPool2d(1) sums in another order:
        # a 1e-7 difference on 32x32 inputs that training amplifies)
        return self.fc(torch.flatten(F.avg_pool2d(x, x.shape[-2:]), 1))


class PlainCNN(nn.Module):
    """The original ``ConvNetMaker``: Conv(3x3)+BN+ReLU / MaxPool layers, then the FC layers."""

    def __init__(self, spec: str, num_classes: int, in_channels: int = 3,
                 image_size: int = 32) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        channels, size = in_channels, image_size
        for layer in spec.split():
            if layer == "MaxPool":
                convs.append(nn.MaxPool2d(2, 2))
                size //= 2
            elif layer.startswith("Conv"):
                out = int(layer[4:])
                convs += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out),
                          nn.ReLU(inplace=True)]
                channels = out
        hidden = [int(x[2:]) for x in spec.split() if x.startswith("FC") and x != "FC"]
        widths = [channels * size * size, *hidden, num_classes]
        fcs: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            fcs += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.conv_layers = nn.Sequential(*convs)
        self.fc_layers = nn.Sequential(*fcs[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers(torch.flatten(self.conv_layers(x), 1))


def check_model_name(name: str, role: str = "model") -> None:
    if name not in MODEL_NAMES:
        raise UsageError(f"unknown {role} {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def create_model(name: str, num_classes: int, in_channels: int = 3,
                 image_size: int = 32) -> nn.Module:
    """A fresh model by name; unknown names are a :class:`UsageError`."""
    check_model_name(name)
    if name in RESNET_BLOCKS:
        return ResNetCifar(RESNET_BLOCKS[name], num_classes, in_channels)
    spec = (PLANE_10 if num_classes <= 10 else PLANE_100)[name]
    return PlainCNN(spec, num_classes, in_channels, image_size)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
