"""The dual lottery ticket (Bai et al., ICLR 2022): Random Sparse Network Transformation (RST) pieces.

A random mask is picked per layer; before it is applied, the dense network is trained with an extra L2 penalty
½·η·w² on the weights the mask will remove, η growing from 0 to a ceiling and then held, which squeezes the
information out of them. The survivors keep their transformed values. RST-Iter repeats this in cycles, each
pruning a new random pick among the survivors. This module holds the configuration, the η schedule, the
penalty (a trainer step hook) and the masks; `rst_search` runs the stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..config import Config, _check, _choice
from ..training.hooks import StepHook
from .masks import Mask, dense_mask, prunable_weights
from .strategies import RandomPruning

RST_METHODS = ("rst", "rst-iter")
RESNET_FAMILIES = ("resnet", "preactresnet", "wrn")

# The transformation's training (docs/rst.md): SGD, LR 1e-3 as given (not scaled from batch 128), momentum 0.9,
# batch 64, constant LR. Weight decay is not given in the paper: 5e-4, the fine-tuning's value.
TRANSFORM_DEFAULTS = {"lr": 1e-3, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "constant",
                      "lr_reference_batch": None, "warmup_epochs": 0, "eval_steps": 0}


@dataclass(frozen=True)
class RSTConfig(Config):
    method: str = field(default="rst", metadata={"help": "rst (one transformation) or rst-iter (cycles)"})
    eta_max: float = field(default=1.0, metadata={"help": "ceiling of the penalty strength eta"})
    eta_step: float = field(default=1e-4, metadata={"help": "eta grows by this every eta_every iterations"})
    eta_every: int = field(default=5, metadata={"help": "iterations between two eta increments"})
    hold_iterations: int = field(default=40_000, metadata={"help": "iterations eta is held at its ceiling"})
    iterations: Optional[int] = field(default=None, metadata={
        "help": "transformation budget per cycle in iterations; none: the ramp (eta_max / eta_step * eta_every) "
                "plus hold_iterations (the paper: 50,000 + 40,000); a number rescales ramp and hold to it, keeping "
                "their proportion and eta_max (CPU-scale runs)"})
    cycles: int = field(default=5, metadata={"help": "rst-iter cycles (cumulative sparsity 1-(1-p)^(c/cycles))"})
    ends_dense: Optional[bool] = field(default=None, metadata={
        "help": "leave the first conv and the classifier dense (none: yes for ResNets/WRNs, as the paper for "
                "CIFAR ResNets; no otherwise)"})

    def validate(self) -> None:
        _choice("method", self.method, RST_METHODS)
        _check(self.eta_max > 0, "eta_max", self.eta_max, "a positive number")
        _check(0 < self.eta_step <= self.eta_max, "eta_step", self.eta_step, "a number in (0, eta_max]")
        _check(self.eta_every >= 1, "eta_every", self.eta_every, "an integer >= 1")
        _check(self.hold_iterations >= 0, "hold_iterations", self.hold_iterations, "an integer >= 0")
        _check(self.iterations is None or self.iterations >= 2, "iterations", self.iterations,
               "an integer >= 2 or none")
        _check(1 <= self.cycles <= 100, "cycles", self.cycles, "an integer in 1..100")

    def n_cycles(self) -> int:
        return self.cycles if self.method == "rst-iter" else 1

    def schedule(self) -> "EtaSchedule":
        full = EtaSchedule(self.eta_max, self.eta_step, self.eta_every, self.hold_iterations)
        return full if self.iterations is None else full.rescaled(self.iterations)

    def keeps_ends_dense(self, model_name: str) -> bool:
        return self.ends_dense if self.ends_dense is not None else model_name.startswith(RESNET_FAMILIES)


@dataclass(frozen=True)
class EtaSchedule:
    """η after n optimiser steps: min(eta_max, eta_step · ⌊n / eta_every⌋), i.e. 0 for the first eta_every
    steps; the ceiling is reached after `ramp_iterations` and held for `hold_iterations`."""
    eta_max: float
    eta_step: float
    eta_every: int
    hold_iterations: int

    @property
    def ramp_iterations(self) -> int:
        return math.ceil(self.eta_max / self.eta_step - 1e-9) * self.eta_every

    @property
    def total_iterations(self) -> int:
        return self.ramp_iterations + self.hold_iterations

    def at(self, iteration: int) -> float:
        if iteration >= self.ramp_iterations:
            return self.eta_max
        return min(self.eta_max, self.eta_step * (iteration // self.eta_every))

    def rescaled(self, iterations: int) -> "EtaSchedule":
        """The same shape in `iterations` steps: ramp and hold shortened in proportion, same ceiling and
        increment interval (so each increment is larger)."""
        ramp = max(self.eta_every, round(iterations * self.ramp_iterations / self.total_iterations))
        ramp = ramp - ramp % self.eta_every or self.eta_every
        increments = ramp // self.eta_every
        return EtaSchedule(self.eta_max, self.eta_max / increments, self.eta_every, max(0, iterations - ramp))

    def describe(self) -> dict:
        return {"eta_max": self.eta_max, "eta_step": self.eta_step, "eta_every": self.eta_every,
                "ramp_iterations": self.ramp_iterations, "hold_iterations": self.hold_iterations,
                "total_iterations": self.total_iterations}


class RSTPenalty(StepHook):
    """½·η·Σ w² over the to-be-masked weights only (`penalized` marks them). η is a device tensor that
    `on_iteration` sets from the schedule, so a captured step reads the new value without re-capture."""

    def __init__(self, model: nn.Module, penalized: Mask, schedule: EtaSchedule, device: torch.device):
        params = dict(model.named_parameters())
        self.params: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        for name, m in penalized.items():
            if bool(m.any()):
                self.params.append(params[name])
                self.masks.append(m.to(device=device, dtype=params[name].dtype))
        self.schedule = schedule
        self.iteration = 0  # optimiser steps done
        self._value = schedule.at(0)
        self.eta = torch.full((), self._value, device=device)

    def extra_loss(self, model):
        if not self.params:
            return None
        total = sum((p.square() * m).sum() for p, m in zip(self.params, self.masks))
        return 0.5 * self.eta * total

    def on_iteration(self, ctx, iteration: int) -> None:
        """After optimiser step `iteration` (0-based): η for the next step, after iteration + 1 steps."""
        self.iteration = iteration + 1
        self._set(self.schedule.at(self.iteration))

    def _set(self, value: float) -> None:
        if value != self._value:
            self.eta.fill_(value)
            self._value = value

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "eta": self._value}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self._set(float(state["eta"]))


def end_layers(model: nn.Module) -> tuple[str, str]:
    """The first conv (or linear) layer and the classifier."""
    names = list(prunable_weights(model))
    return names[0], names[-1]


def cycle_sparsities(ratio: float, cycles: int) -> list[float]:
    """Cumulative sparsity after each cycle: 1 − (1 − p)^(c / cycles)."""
    return [1 - (1 - ratio) ** (c / cycles) for c in range(1, cycles + 1)]


def random_pick(model: nn.Module, mask: Optional[Mask], previous_sparsity: float, sparsity: float, seed: int,
                dense_layers: Sequence[str] = ()) -> Mask:
    """A new uniform random pick per layer among the survivors of `mask`, so each pruned layer goes from
    `previous_sparsity` to `sparsity` (layers in `dense_layers` untouched)."""
    mask = mask if mask is not None else dense_mask(model)
    fraction = 1 - (1 - sparsity) / (1 - previous_sparsity)
    return RandomPruning(seed, "layerwise", dense_layers).prune(model, mask, fraction)


def penalized_weights(before: Mask, after: Mask) -> Mask:
    """The weights alive in `before` that `after` removes: what the transformation squeezes."""
    return {n: before[n] & ~after[n] for n in after}
