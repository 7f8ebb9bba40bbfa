"""Physically shrinking a network: the channel groups a structured ticket may prune, and slicing a full model's
state into the smaller dense model that keeps only some channels of each group.

A channel group is one conv whose output channels can be removed together with everything that reads them:
its BatchNorm (on the output) and the next layer's input channels. In ResNets and WideResNets only the inner
conv of each block is a group, so residual additions always see matching channel sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from ..datasets import DatasetSpec
from ..errors import ConfigError
from .resnet import BasicBlock, PreActBlock, _ResNet
from .small import CNN6
from .vgg import VGG
from .wrn import WideResNet

BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class ChannelGroup:
    """`producer` (a conv weight) makes the channels on dim 0, `bn` normalises them, `consumer` (a conv or
    linear weight) reads them on dim 1."""
    producer: str
    bn: Optional[str]
    consumer: str

    @property
    def name(self) -> str:
        return self.producer[: -len(".weight")]


def _sequential_groups(prefix: str, features: nn.Sequential, classifier_weight: str) -> list[ChannelGroup]:
    convs = [(i, m) for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    groups = []
    for k, (i, _) in enumerate(convs):
        bn = f"{prefix}.features.{i + 1}" if isinstance(features[i + 1], nn.BatchNorm2d) else None
        consumer = f"{prefix}.features.{convs[k + 1][0]}.weight" if k + 1 < len(convs) else classifier_weight
        groups.append(ChannelGroup(f"{prefix}.features.{i}.weight", bn, consumer))
    return groups


def _block_groups(prefix: str, blocks: nn.Sequential) -> list[ChannelGroup]:
    out = []
    for i, block in enumerate(blocks):
        bn = "bn1" if isinstance(block, BasicBlock) else "bn2"
        assert isinstance(block, (BasicBlock, PreActBlock))
        out.append(ChannelGroup(f"{prefix}.{i}.conv1.weight", f"{prefix}.{i}.{bn}", f"{prefix}.{i}.conv2.weight"))
    return out


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable channel groups of a model from `build_model`, in the order of its `channels` override."""
    net = model.net
    if isinstance(net, CNN6):
        return _sequential_groups("net", net.features, "net.classifier.2.weight")
    if isinstance(net, VGG):
        return _sequential_groups("net", net.features, "net.classifier.1.weight")
    if isinstance(net, _ResNet):
        return _block_groups("net.layers", net.layers)
    if isinstance(net, WideResNet):
        return _block_groups("net.blocks", net.blocks)
    raise ConfigError(f"{type(net).__name__} has no structured pruning support: use cnn6, vgg*, resnet18, "
                      "preactresnet18 or wrn-DEPTH-WIDEN")


def channel_counts(model: nn.Module) -> list[int]:
    weights = dict(model.named_parameters())
    return [weights[g.producer].shape[0] for g in channel_groups(model)]


def slicing_plan(groups: list[ChannelGroup], keep: dict[str, torch.Tensor]) -> dict[str, list[tuple[int, torch.Tensor]]]:
    """state_dict key -> [(dim, kept indices)] for every tensor a channel group touches."""
    plan: dict[str, list] = {}
    for g in groups:
        idx = keep[g.name]
        plan.setdefault(g.producer, []).append((0, idx))
        if g.bn:
            for t in BN_TENSORS:
                plan.setdefault(f"{g.bn}.{t}", []).append((0, idx))
        plan.setdefault(g.consumer, []).append((1, idx))
    return plan


def sliced_state(state: dict[str, torch.Tensor], plan: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for dim, idx in plan.get(k, ()):
            v = v.index_select(dim, idx.to(v.device))
        out[k] = v.clone()
    return out


def shrink(model: nn.Module, keep: dict[str, torch.Tensor], spec: DatasetSpec,
           state: Optional[dict] = None) -> nn.Module:
    """The smaller dense model keeping channels `keep[group name]` (sorted indices) of each group, holding
    `state` (default: the model's own weights) sliced accordingly; `spec` is the data `model` was built for
    (the shrunk model keeps its class count and normalisation)."""
    from . import build_model
    arch = model.architecture
    groups = channel_groups(model)
    missing = [g.name for g in groups if g.name not in keep]
    if missing:
        raise ValueError(f"no kept channels given for {missing[:3]}")
    small = build_model(arch["model"], arch["width"], spec, channels=[int(keep[g.name].numel()) for g in groups])
    small.load_state_dict(sliced_state(state if state is not None else model.state_dict(),
                                       slicing_plan(groups, keep)))
    return small


@torch.no_grad()
def count_macs(model: nn.Module, image: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on one image (conv and linear layers)."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        model(torch.zeros(1, *image, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def state_mismatch(name: str, width: float, spec: DatasetSpec, state: dict,
                   channels: Optional[list] = None) -> Optional[str]:
    """How a stored state_dict (a checkpoint's or a ticket's) fails to fit model `name` at `width` (shrunk to
    `channels`), or None when it fits. The model is built on the meta device, so a record edited to absurd sizes
    (a width or channel count of billions) is refused before anything of that size is allocated. A user's
    factory is not built here (it is built, for real, by whoever names it)."""
    from ..factory import is_factory_path
    from . import build_model
    if is_factory_path(name):
        return None
    size = f"{name} at width {width:g}" + (" with its recorded channel counts" if channels is not None else "")
    try:
        with torch.device("meta"):
            expected = build_model(name, width, spec, channels=channels).state_dict()
    except ConfigError as e:
        return str(e)
    except (RuntimeError, ValueError, OverflowError, MemoryError) as e:
        return f"{size} cannot be built ({(str(e).strip().splitlines() or [type(e).__name__])[0]})"
    if not isinstance(state, dict):
        return "its weights are not a mapping of names to tensors"
    for key, want in expected.items():
        got = state.get(key)
        if not isinstance(got, torch.Tensor):
            return f"it has no tensor {key} of {size}"
        if tuple(got.shape) != tuple(want.shape):
            return f"{key} has shape {tuple(got.shape)} but {size} has {tuple(want.shape)}"
    extra = [k for k in state if k not in expected]
    if extra:
        return f"{extra[0]} is not a tensor of {size}"
    return None
