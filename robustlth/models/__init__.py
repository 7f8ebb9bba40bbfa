"""Model registry. Every model takes [0, 1] images; the dataset normalisation is a buffer inside it."""
from __future__ import annotations

import re
from typing import Callable, Optional

import torch.nn as nn

from ..datasets import CIFAR10, DatasetSpec
from ..errors import ConfigError
from ..factory import build_factory_model, is_factory_path, resolve_factory
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


# Models whose constructors take `channels` (per-group channel counts of a shrunk structured ticket).
CHANNELS = {"cnn6": CNN6, **{name: (lambda width, num_classes, channels, name=name: VGG(name, width, num_classes,
                                                                                     channels=channels))
                             for name in VGG_CONFIGS},
            "resnet18": ResNet18, "preactresnet18": PreActResNet18}


def build_model(name: str, width: float = 1.0, spec: DatasetSpec = CIFAR10,
                channels: Optional[list] = None) -> nn.Module:
    """A fresh model for the data `spec` describes (its class count, normalisation), wrapped so it
    normalises its [0, 1] input; `channels` rebuilds a shrunk structured ticket. A user's factory
    (`package.module:factory`) builds its own normalisation and cannot be shrunk."""
    if is_factory_path(name):
        if channels is not None:
            raise ConfigError(f"model={name!r} is a user factory: structured tickets cannot shrink it")
        return build_factory_model(name, width)
    check_model_name(name)
    if (spec.channels, spec.image_size) != (3, 32):
        raise ConfigError(f"dataset {spec.name!r} has {spec.channels}x{spec.image_size}x{spec.image_size} images; "
                          "the models take 3x32x32")
    m = _WRN.match(name)
    k = spec.num_classes
    if channels is not None:
        if not (m or name in CHANNELS):
            raise ConfigError(f"model={name!r} has no channel override: structured tickets support "
                              f"{', '.join(CHANNELS)} and wrn-DEPTH-WIDEN")
        try:
            net = (WideResNet(int(m.group(1)), int(m.group(2)), width, k, channels=channels) if m
                   else CHANNELS[name](width, k, channels=channels))
        except ValueError as e:
            raise ConfigError(f"invalid channels for {name}: {e}") from None
    else:
        net = WideResNet(int(m.group(1)), int(m.group(2)), width, k) if m else REGISTRY[name](width, k)
    model = Normalized(net, spec.mean, spec.std)
    # What rebuilds it: checkpoints store this, so a shrunk model loads without its ticket.
    model.architecture = {"model": name, "width": width, "channels": None if channels is None else list(channels)}
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["REGISTRY", "build_model", "check_model_name", "count_parameters", "model_names", "Normalized"]
