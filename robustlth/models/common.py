"""Pieces shared by the architectures."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..datasets import CIFAR10


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least one channel)."""
    return max(1, int(round(channels * width)))


def channels_override(channels, n: int) -> list:
    """One entry per prunable channel group: an explicit count, or None for the width's default. A structured
    ticket rebuilds its shrunk network from these counts."""
    if channels is None:
        return [None] * n
    channels = list(channels)
    if len(channels) != n or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels):
        raise ValueError(f"channels must be {n} integers >= 1 (one per prunable channel group), got {channels!r}")
    return channels


class Normalized(nn.Module):
    """Subtracts the dataset mean and divides by its std, then runs the network.

    Keeping the normalisation inside the model means attacks and ε always live in [0, 1] pixel space.
    """

    def __init__(self, net: nn.Module, mean=CIFAR10.mean, std=CIFAR10.std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
