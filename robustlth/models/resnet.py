"""CIFAR ResNet-18 (3x3 stem, no max-pool) and its pre-activation variant."""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
import torch.nn.functional as F

from .common import channels_override, scaled


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, inner: Optional[int] = None):
        super().__init__()
        inner = inner or c_out  # the block's inner width (its conv1 output); a structured ticket shrinks it
        self.conv1 = nn.Conv2d(c_in, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, inner: Optional[int] = None):
        super().__init__()
        inner = inner or c_out
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, inner, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, c_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class _ResNet(nn.Module):
    def __init__(self, block, width: float, preact: bool, num_classes: int = 10, channels=None):
        super().__init__()
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        inner = iter(channels_override(channels, 8))  # blocks' inner widths only: residual paths keep theirs
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = None if preact else nn.BatchNorm2d(widths[0])
        layers, c_in = [], widths[0]
        for i, c in enumerate(widths):
            for j in range(2):
                layers.append(block(c_in, c, 2 if (i > 0 and j == 0) else 1, next(inner)))
                c_in = c
        self.layers = nn.Sequential(*layers)
        self.bn_final = nn.BatchNorm2d(c_in) if preact else None
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        out = self.conv1(x)
        if self.bn1 is not None:
            out = F.relu(self.bn1(out))
        out = self.layers(out)
        if self.bn_final is not None:
            out = F.relu(self.bn_final(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def ResNet18(width: float = 1.0, num_classes: int = 10, channels=None) -> nn.Module:
    return _ResNet(BasicBlock, width, preact=False, num_classes=num_classes, channels=channels)


def PreActResNet18(width: float = 1.0, num_classes: int = 10, channels=None) -> nn.Module:
    return _ResNet(PreActBlock, width, preact=True, num_classes=num_classes, channels=channels)
