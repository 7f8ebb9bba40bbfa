"""Model registry. Every model takes [0, 1] images; the dataset normalisation is a buffer inside it."""
from __future__ import annotations

import re
from typing import Callable

import torch.nn as nn

from ..config import ConfigError
from ..factory import build_factory_model, is_factory_path, resolve_factory
from .common import Normalized
from .resnet import PreActResNet18, ResNet18
from .small import CNN6, FCN, ConvNet, LeNet300
from .vgg import VGG_CONFIGS, VGG
from .wrn import WideResNet

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")

REGISTRY: dict[str, Callable[[float], nn.Module]] = {
    **{name: (lambda width, name=name: VGG(name, width)) for name in VGG_CONFIGS},
    "resnet18": lambda width: ResNet18(width),
    "preactresnet18": lambda width: PreActResNet18(width),
    "conv2": lambda width: ConvNet(2, width),
    "conv4": lambda width: ConvNet(4, width),
    "conv6": lambda width: ConvNet(6, width),
    "cnn6": lambda width: CNN6(width),
    "lenet300": lambda width: LeNet300(width),
    "fcn": lambda width: FCN(width),
}
# WideResNets are named wrn-DEPTH-WIDEN (depth = 6n + 4); these are the ones listed by `robustlth models`.
WRN_EXAMPLES = ("wrn-16-4", "wrn-28-10", "wrn-34-10")


def model_names() -> list[str]:
    return list(REGISTRY) + list(WRN_EXAMPLES)


def check_model_name(name: str) -> None:
    if is_factory_path(name):  # a user's own `package.module:factory` (robustlth.factory)
        resolve_factory(name)
        return
    m = _WRN.match(name)
    if m:
        depth = int(m.group(1))
        if (depth - 4) % 6 != 0 or depth < 10 or int(m.group(2)) < 1:
            raise ConfigError(f"invalid model={name!r}: WideResNet depth must be 6n+4 >= 10 and widen factor "
                              ">= 1 (e.g. wrn-16-4, wrn-28-10, wrn-34-10)")
        return
    if name not in REGISTRY:
        raise ConfigError(f"unknown model={name!r}: available models are {', '.join(REGISTRY)}, "
                          "and wrn-DEPTH-WIDEN (e.g. " + ", ".join(WRN_EXAMPLES) + "), or package.module:factory "
                          "for your own")


def build_model(name: str, width: float = 1.0) -> nn.Module:
    """A fresh model, wrapped so it normalises its [0, 1] input (a user's factory builds its own normalisation)."""
    if is_factory_path(name):
        return build_factory_model(name, width)
    check_model_name(name)
    m = _WRN.match(name)
    net = WideResNet(int(m.group(1)), int(m.group(2)), width) if m else REGISTRY[name](width)
    return Normalized(net)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["REGISTRY", "build_model", "check_model_name", "count_parameters", "model_names", "Normalized"]
