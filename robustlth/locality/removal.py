"""Accuracy after removing the k most or least connected first-layer units: a unit is removed by zeroing its
outgoing weights, so nothing of it reaches the next layer (its BatchNorm shift included)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..data import Dataset, as_float
from ..evaluate import predict
from ..pruning.masks import Mask, prunable_weights
from .analysis import in_degree


@torch.no_grad()
def removal_accuracy(model: nn.Module, mask: Mask, data: Dataset, ks: Sequence[int]) -> dict[str, list]:
    """{'k': [...], 'most': [...], 'least': [...]}: test accuracy with the k units of largest / smallest
    in-degree removed, among the units that are connected (some input and some output survives). k values
    above the number of connected units are skipped."""
    names = list(prunable_weights(model))
    first, nxt = names[0], names[1]
    deg = in_degree(mask[first]).to(torch.float64)
    connected = (deg > 0) & mask[nxt].any(0).cpu()
    units = connected.nonzero().squeeze(1)
    order = units[torch.argsort(-deg[units], stable=True)]  # most connected first
    weight = prunable_weights(model)[nxt]
    saved = weight.detach().clone()
    x, y = as_float(data.test, weight.device)
    out = {"k": [], "most": [], "least": [], "connected": int(units.numel())}
    for k in [k for k in ks if k <= units.numel()]:
        out["k"].append(k)
        for key, removed in (("most", order[:k]), ("least", order.flip(0)[:k])):
            weight[:, removed.to(weight.device)] = 0
            out[key].append(float(predict(model, x, y)[0].float().mean()))
            weight.copy_(saved)
    return out
