"""Small networks: the LTH paper's Conv-2/4/6 and LeNet-300-100, the locality paper's FCN, and a 6-conv CNN
sized for CPU-scale adversarial training."""
from __future__ import annotations

import torch.nn as nn

from .common import scaled
from .vgg import conv_stack


class ConvNet(nn.Module):
    """Conv-2/4/6: pairs of 3x3 convs (64, 128, 256) each followed by max-pool, then FC 256-256-10."""

    def __init__(self, n_conv: int, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        layers, c_in, size = [], 3, 32
        for i in range(n_conv // 2):
            c = scaled(64 * 2 ** i, width)
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in, size = c, size // 2
        h = scaled(256, width)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * size * size, h), nn.ReLU(inplace=True),
                                        nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet300(nn.Module):
    """LeNet-300-100 on flattened 32x32x3 images."""

    def __init__(self, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        h1, h2 = scaled(300, width), scaled(100, width)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3072, h1), nn.ReLU(inplace=True), nn.Linear(h1, h2),
                                 nn.ReLU(inplace=True), nn.Linear(h2, num_classes))

    def forward(self, x):
        return self.net(x)


class FCN(nn.Module):
    """Three hidden layers of 1024 units, BatchNorm on each hidden layer's input, ReLU."""

    def __init__(self, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        h = scaled(1024, width)
        layers: list[nn.Module] = [nn.Flatten()]
        c_in = 3072
        for _ in range(3):
            layers += [nn.BatchNorm1d(c_in), nn.Linear(c_in, h), nn.ReLU(inplace=True)]
            c_in = h
        layers.append(nn.Linear(c_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class CNN6(nn.Module):
    """Six 3x3 conv+BN+ReLU layers (32, 32, 64, 64, 128, 128 at width 1; ~290 k parameters), global average
    pool, linear classifier: large enough for robustness to keep improving, small enough for 2 CPU cores."""

    def __init__(self, width: float = 1.0, num_classes: int = 10, channels=None):
        super().__init__()
        self.features, c = conv_stack([32, 32, "M", 64, 64, "M", 128, 128, "M"], width, channels)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))
