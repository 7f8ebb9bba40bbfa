"""Optimisers and training losses by name (`TrainConfig.optimizer`, `TrainConfig.loss`).

An optimiser builder takes (parameters, TrainConfig) and returns a `torch.optim.Optimizer`; a loss builder
takes the TrainConfig and returns loss(logits, labels). Builders import torch when called, so the configs
that list these names stay light.
"""
from __future__ import annotations

import functools

from .registry import Registry

OPTIMIZERS = Registry("optimiser")
LOSSES = Registry("loss")


@OPTIMIZERS.register("sgd")
def sgd(params, cfg):
    """Momentum (not Nesterov) and coupled weight decay: the update a captured training step reproduces."""
    import torch
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params, cfg):
    """torch's default betas and eps; `momentum` is not used."""
    import torch
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@LOSSES.register("ce")
def cross_entropy(cfg):
    import torch.nn.functional as F
    return functools.partial(F.cross_entropy, label_smoothing=cfg.label_smoothing)
