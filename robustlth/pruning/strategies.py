"""Pruning strategies as small pluggable classes.

Each prunes a fraction of the weights that are still *remaining* and returns a new mask. Counts are exact:
ties are broken deterministically by position (a stable sort), so the same inputs give the same mask.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..registry import Registry
from .masks import Mask, output_layer, prunable_weights

# Name -> Strategy class. A new criterion is one registered class: `make_strategy`, PruneConfig's validation
# and the --strategy help all read this registry. Each class is built as
# cls.from_settings(output_rate=, dense_layers=, seed=), so it takes the settings it uses and ignores the rest.
STRATEGIES: Registry[type["Strategy"]] = Registry("pruning strategy")


def _prune_lowest(scores: dict[str, torch.Tensor], mask: Mask, n_prune: int) -> Mask:
    """Remove the `n_prune` remaining entries with the lowest scores, pooled over the given layers."""
    names = list(scores)
    flat_scores = torch.cat([scores[n].detach().flatten().float().cpu() for n in names])
    flat_alive = torch.cat([mask[n].flatten().cpu() for n in names])
    alive_idx = flat_alive.nonzero().squeeze(1)
    if n_prune > alive_idx.numel():
        raise ValueError(f"cannot prune {n_prune} weights: only {alive_idx.numel()} remain")
    order = torch.argsort(flat_scores[alive_idx], stable=True)
    flat_alive = flat_alive.clone()
    flat_alive[alive_idx[order[:n_prune]]] = False
    out, offset = {}, 0
    for n in names:
        k = mask[n].numel()
        out[n] = flat_alive[offset:offset + k].view_as(mask[n]).to(mask[n].device)
        offset += k
    return out


def _n_prune(mask: Mask, names: Sequence[str], fraction: float) -> int:
    return int(round(fraction * sum(int(mask[n].sum()) for n in names)))


class Strategy(ABC):
    """Base: `prune(model, mask, fraction, init_state)` -> new mask."""
    name = "strategy"

    @classmethod
    def from_settings(cls, output_rate: Optional[float] = None, dense_layers: Sequence[str] = (),
                      seed: int = 0) -> "Strategy":
        """The strategy for PruneConfig's settings (output_rate, dense_layers, prune_seed); by default it
        takes none of them."""
        return cls()

    @abstractmethod
    def prune(self, model: nn.Module, mask: Mask, fraction: float, init_state: Optional[dict] = None) -> Mask:
        """Prune `fraction` of the weights that `mask` still keeps."""


@STRATEGIES.register("global")
class GlobalMagnitude(Strategy):
    """Plain global magnitude pruning with one threshold (open_lth's sparse_global)."""
    name = "global"

    def __init__(self, dense_layers: Sequence[str] = ()):
        self.dense_layers = set(dense_layers)

    @classmethod
    def from_settings(cls, output_rate=None, dense_layers=(), seed=0):
        return cls(dense_layers)

    def scores(self, model, mask, init_state) -> dict[str, torch.Tensor]:
        return {n: w.abs() for n, w in prunable_weights(model).items()}

    def prune(self, model, mask, fraction, init_state=None):
        unknown = self.dense_layers - set(mask)
        if unknown:
            raise ConfigError(f"dense_layers {sorted(unknown)} are not prunable weights; choose from {sorted(mask)}")
        scores = {n: s for n, s in self.scores(model, mask, init_state).items() if n not in self.dense_layers}
        new = _prune_lowest(scores, mask, _n_prune(mask, list(scores), fraction))
        return {n: new.get(n, mask[n]) for n in mask}


@STRATEGIES.register("global_normalized")
class GlobalNormalized(GlobalMagnitude):
    """The boosting-ticket criterion: each layer's |w| divided by the mean |w| of its remaining weights, then
    one global threshold; all conv and linear layers, the classifier included."""
    name = "global_normalized"

    def scores(self, model, mask, init_state):
        out = {}
        for n, w in prunable_weights(model).items():
            alive = mask[n]
            mean = w.abs()[alive].mean() if bool(alive.any()) else torch.tensor(1.0)
            out[n] = w.abs() / mean.clamp_min(1e-12)
        return out


@STRATEGIES.register("movement")
class Movement(GlobalMagnitude):
    """Prune the weights that moved least during training: score |θ_T − θ_0| instead of |θ_T|."""
    name = "movement"

    def scores(self, model, mask, init_state):
        if init_state is None:
            raise ValueError("the movement strategy needs the initial weights (init_state)")
        return {n: (w.detach() - init_state[n].to(w.device)).abs() for n, w in prunable_weights(model).items()}


@STRATEGIES.register("layerwise")
class Layerwise(Strategy):
    """The same rate in every layer, the output layer at half rate (LTH small nets), or explicit rates."""
    name = "layerwise"

    def __init__(self, output_rate: Optional[float] = None, rates: Optional[dict[str, float]] = None):
        self.output_rate, self.rates = output_rate, rates or {}

    @classmethod
    def from_settings(cls, output_rate=None, dense_layers=(), seed=0):
        return cls(output_rate)

    def prune(self, model, mask, fraction, init_state=None):
        weights = prunable_weights(model)
        out_name = output_layer(model)
        new = {}
        for n, w in weights.items():
            rate = self.rates.get(n, (fraction / 2 if self.output_rate is None else self.output_rate)
                                  if n == out_name else fraction)
            new[n] = _prune_lowest({n: w.abs()}, mask, _n_prune(mask, [n], rate))[n]
        return new


@STRATEGIES.register("random")
class RandomPruning(Strategy):
    """Random pruning: per layer at the same rate (`scope='layerwise'`) or pooled over all layers ('global')."""
    name = "random"

    def __init__(self, seed: int = 0, scope: str = "global", dense_layers: Sequence[str] = ()):
        if scope not in ("global", "layerwise"):
            raise ValueError(f"invalid scope={scope!r}: expected global or layerwise")
        self.seed, self.scope, self.dense_layers = seed, scope, set(dense_layers)

    @classmethod
    def from_settings(cls, output_rate=None, dense_layers=(), seed=0):
        return cls(seed, "global", dense_layers)

    def _scores(self, mask):
        g = torch.Generator().manual_seed(self.seed)
        return {n: torch.rand(m.shape, generator=g) for n, m in mask.items()}

    def prune(self, model, mask, fraction, init_state=None):
        unknown = self.dense_layers - set(mask)
        if unknown:
            raise ConfigError(f"dense_layers {sorted(unknown)} are not prunable weights; choose from {sorted(mask)}")
        scores = self._scores(mask)
        if self.scope == "layerwise":
            return {n: mask[n] if n in self.dense_layers else
                    _prune_lowest({n: scores[n]}, mask, _n_prune(mask, [n], fraction))[n] for n in mask}
        pool = {n: s for n, s in scores.items() if n not in self.dense_layers}
        new = _prune_lowest(pool, mask, _n_prune(mask, list(pool), fraction))
        return {n: new.get(n, mask[n]) for n in mask}

    def match(self, mask: Mask, target: Mask) -> Mask:
        """A random mask with the per-layer (layerwise) or total (global) sparsity of `target`."""
        scores = self._scores(mask)
        if self.scope == "layerwise":
            return {n: _prune_lowest({n: scores[n]}, mask, int(mask[n].sum() - target[n].sum()))[n] for n in mask}
        n_prune = sum(int(mask[n].sum() - target[n].sum()) for n in mask)
        return _prune_lowest(scores, mask, n_prune)


def make_strategy(name: str, output_rate: Optional[float] = None, dense_layers: Sequence[str] = (),
                  seed: int = 0) -> Strategy:
    """The registered strategy `name` (an unknown name: one ConfigError line listing the registered ones)."""
    return STRATEGIES[name].from_settings(output_rate=output_rate, dense_layers=dense_layers, seed=seed)


