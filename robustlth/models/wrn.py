"""WideResNet-DEPTH-WIDEN for CIFAR (pre-activation blocks, no dropout)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .common import channels_override, scaled
from .resnet import PreActBlock


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, width: float = 1.0, num_classes: int = 10, channels=None):
        super().__init__()
        n = (depth - 4) // 6
        inner = iter(channels_override(channels, 3 * n))  # blocks' inner widths only
        widths = [scaled(c, width) for c in (16, 16 * widen, 32 * widen, 64 * widen)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, c_in = [], widths[0]
        for g, c in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(PreActBlock(c_in, c, 2 if (g > 0 and j == 0) else 1, next(inner)))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
