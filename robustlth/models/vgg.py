"""CIFAR VGG with BatchNorm; the classifier is 512->512 (BatchNorm, ReLU) -> 10 as in the boosting-ticket paper."""
from __future__ import annotations

import torch.nn as nn

from .common import channels_override, scaled

VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def conv_stack(plan: list, width: float, channels=None) -> tuple[nn.Sequential, int]:
    """Conv+BN+ReLU layers of `plan` ("M": max-pool); `channels` overrides each conv's output count (a shrunk
    structured ticket)."""
    layers: list[nn.Module] = []
    c_in = 3
    counts = iter(channels_override(channels, sum(item != "M" for item in plan)))
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            c_out = next(counts) or scaled(item, width)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
    return nn.Sequential(*layers), c_in


class VGG(nn.Module):
    def __init__(self, name: str, width: float = 1.0, num_classes: int = 10, channels=None):
        super().__init__()
        self.features, c = conv_stack(VGG_CONFIGS[name], width, channels)
        hidden = scaled(512, width)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c, hidden), nn.BatchNorm1d(hidden),
                                        nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))
