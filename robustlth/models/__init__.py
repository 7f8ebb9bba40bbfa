"""Model registry. Every model takes [0, 1] images; the dataset normalisation is a buffer inside it."""
from __future__ import annotations

import re
from typing import Callable

import torch.nn as nn

from ..datasets import CIFAR10, DatasetSpec
from ..errors import ConfigError
from .common import Normalized
from .resnet import PreActResNet18, ResNet18
from .small import CNN6, FCN, ConvNet, LeNet300
from .vgg import VGG_CONFIGS, VGG
from .wrn import WideResNet

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")

# Each entry builds the bare network for a width multiplier and a class count (inputs are 3x32x32).
REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{name: (lambda width, num_classes=10, name=name: VGG(name, width, num_classes)) for name in VGG_CONFIGS},
    "resnet18": lambda width, num_classes=10: ResNet18(width, num_classes),
    "preactresnet18": lambda width, num_classes=10: PreActResNet18(width, num_classes),
    "conv2": lambda width, num_classes=10: ConvNet(2, width, num_classes),
    "conv4": lambda width, num_classes=10: ConvNet(4, width, num_classes),
    "conv6": lambda width, num_classes=10: ConvNet(6, width, num_classes),
    "cnn6": lambda width, num_classes=10: CNN6(width, num_classes),
    "lenet300": lambda width, num_classes=10: LeNet300(width, num_classes),
    "fcn": lambda width, num_classes=10: FCN(width, num_classes),
}
# WideResNets are named wrn-DEPTH-WIDEN (depth = 6n + 4); these are the ones listed by `robustlth models`.
WRN_EXAMPLES = ("wrn-16-4", "wrn-28-10", "wrn-34-10")


def model_names() -> list[str]:
    return list(REGISTRY) + list(WRN_EXAMPLES)


def check_model_name(name: str) -> None:
    m = _WRN.match(name)
    if m:
        depth = int(m.group(1))
        if (depth - 4) % 6 != 0 or depth < 10 or int(m.group(2)) < 1:
            raise ConfigError(f"invalid model={name!r}: WideResNet depth must be 6n+4 >= 10 and widen factor "
                              ">= 1 (e.g. wrn-16-4, wrn-28-10, wrn-34-10)")
        return
    if name not in REGISTRY:
        raise ConfigError(f"unknown model={name!r}: available models are {', '.join(REGISTRY)}, "
                          "and wrn-DEPTH-WIDEN (e.g. " + ", ".join(WRN_EXAMPLES) + ")")


def build_model(name: str, width: float = 1.0, spec: DatasetSpec = CIFAR10) -> nn.Module:
    """A fresh model for the data `spec` describes (its class count, normalisation), wrapped so it
    normalises its [0, 1] input."""
    check_model_name(name)
    if (spec.channels, spec.image_size) != (3, 32):
        raise ConfigError(f"dataset {spec.name!r} has {spec.channels}x{spec.image_size}x{spec.image_size} images; "
                          "the models take 3x32x32")
    m = _WRN.match(name)
    k = spec.num_classes
    net = WideResNet(int(m.group(1)), int(m.group(2)), width, k) if m else REGISTRY[name](width, k)
    return Normalized(net, spec.mean, spec.std)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["REGISTRY", "build_model", "check_model_name", "count_parameters", "model_names", "Normalized"]
