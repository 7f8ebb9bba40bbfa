"""Models by name. Every model takes [0, 1] images; the dataset normalisation is a buffer inside it."""
from __future__ import annotations

import functools
import inspect
import re
from typing import Callable, Optional

import torch.nn as nn

from ..datasets import DatasetSpec
from ..errors import ConfigError, RobustLTHError
from ..factory import build_factory_model, is_factory_path, resolve_factory
from ..registry import Registry
from .common import Normalized
from .resnet import PreActResNet18, ResNet18
from .small import CNN6, FCN, ConvNet, LeNet300
from .vgg import VGG_CONFIGS, VGG
from .wrn import WideResNet

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")

# Name -> builder(width, num_classes) of the bare network (inputs are 3x32x32). A builder that also takes
# `channels` (per-group channel counts) rebuilds a shrunk structured ticket. WideResNets are named by pattern,
# wrn-DEPTH-WIDEN, and a user's own model by its `package.module:factory`, so neither is registered.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
for _vgg in VGG_CONFIGS:
    MODELS.register(_vgg, functools.partial(VGG, _vgg))
MODELS.register("resnet18", ResNet18)
MODELS.register("preactresnet18", PreActResNet18)
MODELS.register("conv2", functools.partial(ConvNet, 2))
MODELS.register("conv4", functools.partial(ConvNet, 4))
MODELS.register("conv6", functools.partial(ConvNet, 6))
MODELS.register("cnn6", CNN6)
MODELS.register("lenet300", LeNet300)
MODELS.register("fcn", FCN)

# WideResNets are named wrn-DEPTH-WIDEN (depth = 6n + 4); these are the ones listed by `robustlth models`.
WRN_EXAMPLES = ("wrn-16-4", "wrn-28-10", "wrn-34-10")


def model_names() -> list[str]:
    return list(MODELS) + list(WRN_EXAMPLES)


def shrinkable_models() -> list[str]:
    """The registered models whose builders take `channels` (structured tickets shrink them; WRNs too)."""
    return [n for n, build in MODELS.items() if "channels" in inspect.signature(build).parameters]


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
    if name not in MODELS:
        raise ConfigError(f"unknown model={name!r}: available models are {MODELS.help()}, "
                          "and wrn-DEPTH-WIDEN (e.g. " + ", ".join(WRN_EXAMPLES) + "), or package.module:factory "
                          "for your own")


def build_model(name: str, width: float, spec: DatasetSpec, channels: Optional[list] = None) -> nn.Module:
    """A fresh model for the data `spec` describes (its class count, normalisation), wrapped so it
    normalises its [0, 1] input; `channels` rebuilds a shrunk structured ticket. The spec is always the
    data's own (a ticket's `ticket_data_spec`, a dataset's `.spec`); only code with no data at all (listing
    models) names one, `datasets.CIFAR10`. A user's factory (`package.module:factory`) builds its own
    normalisation and cannot be shrunk."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"build_model needs the DatasetSpec of the data, got {spec!r}")
    if is_factory_path(name):
        if channels is not None:
            raise ConfigError(f"model={name!r} is a user factory: structured tickets cannot shrink it")
        try:
            return build_factory_model(name, width)
        except RobustLTHError:
            raise
        except Exception as e:  # the user's own code failed: one line naming the factory, not a traceback
            raise ConfigError(f"model factory {name} failed: {_first_line(e)}") from None
    check_model_name(name)
    if (spec.channels, spec.image_size) != (3, 32):
        raise ConfigError(f"dataset {spec.name!r} has {spec.channels}x{spec.image_size}x{spec.image_size} images; "
                          "the models take 3x32x32")
    m = _WRN.match(name)
    k = spec.num_classes
    if channels is not None:
        if not (m or name in shrinkable_models()):
            raise ConfigError(f"model={name!r} has no channel override: structured tickets support "
                              f"{', '.join(shrinkable_models())} and wrn-DEPTH-WIDEN")
        try:
            net = (WideResNet(int(m.group(1)), int(m.group(2)), width, k, channels=channels) if m
                   else MODELS[name](width, k, channels=channels))
        except ValueError as e:
            raise ConfigError(f"invalid channels for {name}: {e}") from None
    else:
        net = WideResNet(int(m.group(1)), int(m.group(2)), width, k) if m else MODELS[name](width, k)
    model = Normalized(net, spec.mean, spec.std)
    # What rebuilds it: checkpoints store this, so a shrunk model loads without its ticket.
    model.architecture = {"model": name, "width": width, "channels": None if channels is None else list(channels)}
    return model


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def check_model_output(model: nn.Module, name: str, spec: DatasetSpec, image_shape: tuple[int, ...]) -> None:
    """Run one sample batch of the data's image shape through `model` (eval mode, no gradients, on CPU): its
    output must be one logit per class, [N, num_classes]. A user factory's model whose forward fails is one
    line naming the factory; a built-in model failing here is a bug and surfaces as a traceback."""
    import torch
    x = torch.full((2, *image_shape), 0.5)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    except RobustLTHError:
        raise
    except Exception as e:
        if not is_factory_path(name):
            raise
        raise ConfigError(f"model factory {name}: its model fails on a batch of {tuple(x.shape)} images "
                          f"({_first_line(e)})") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ConfigError(f"model {name} outputs {got} for a batch of 2 images of {'x'.join(map(str, image_shape))}; "
                          f"expected (2, {spec.num_classes}): one logit per class of dataset {spec.name}")


def build_checked_model(name: str, width: float, spec: DatasetSpec,
                        image_shape: Optional[tuple[int, ...]] = None) -> nn.Module:
    """`build_model` plus `check_model_output` on the data's image shape (default: the spec's), leaving the
    global random state as it was: what commands call before anything is written, to refuse a model that
    cannot train on the data (a user factory that raises, returns no module, or has the wrong class count)."""
    import torch
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, width, spec)
    check_model_output(model, name, spec,
                       tuple(image_shape) if image_shape else (spec.channels, spec.image_size, spec.image_size))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "build_checked_model", "build_model", "check_model_name", "check_model_output",
           "count_parameters", "model_names", "shrinkable_models", "Normalized"]
