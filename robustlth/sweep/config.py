"""Hyperparameters and presets of `robustlth sparsity-sweep`: dense vs IMP ticket vs random ticket vs RST (and
RST-Iter) at several sparsities, natural training (the dual-ticket paper's claim, docs/rst.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..config import SEED_MAX, Config, _check, _choice
from ..shared_data import EXACT_SUBSET_SOURCE  # the data-finding rule: docs/data.md

METHODS = ("dense", "imp", "random", "rst", "rst-iter")
MAX_RST_ITERATIONS = 10_000_000  # 111 times the paper's 90,000: beyond, a typo that would run for weeks

# The paper's fine-tuning (docs/rst.md) for every arm: SGD, LR 0.1 -> 0.01 at 50 % -> 0.001 at 75 % of the budget (200
# epochs in the paper), weight decay 5e-4, batch 128, no warm-up, natural training.
FINETUNE_DEFAULTS = {"lr": 0.1, "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "step",
                     "milestones": [0.5, 0.75], "warmup_epochs": 0, "eval_steps": 0, "epochs": 200}


@dataclass(frozen=True)
class SweepConfig(Config):
    methods: Tuple[str, ...] = field(default=("dense", "imp", "random", "rst"), metadata={
        "help": "dense; imp (IMP with reset to θ0 through the sparsities in order, global magnitude); random (the "
                "RST arm's random mask, no transformation); rst; rst-iter"})
    sparsities: Tuple[float, ...] = field(default=(0.5, 0.7, 0.9, 0.95), metadata={
        "help": "overall fractions of the prunable weights removed"})
    seeds: Tuple[int, ...] = field(default=(0, 1), metadata={"help": "seeds (θ0, masks, batch order)"})
    ends_dense: bool = field(default=True, metadata={
        "help": "random and RST masks leave the first conv and the classifier dense (the paper's CIFAR ResNets); "
                "the other layers are pruned a little more so the overall sparsity matches"})
    rst_iterations: Optional[int] = field(default=None, metadata={
        "help": "transformation iterations per cycle (none: the paper's 90,000)"})
    rst_eta_max: float = field(default=1.0, metadata={"help": "ceiling of eta (the paper: 1.0)"})
    rst_lr: float = field(default=1e-3, metadata={"help": "LR of the transformation (the paper: 1e-3)"})

    def validate(self) -> None:
        _check(len(self.methods) >= 1, "methods", self.methods, "at least one of " + ", ".join(METHODS))
        for m in self.methods:
            _choice("methods", m, METHODS)
        _check(len(self.sparsities) >= 1 and all(0 < s < 1 for s in self.sparsities)
               and list(self.sparsities) == sorted(set(self.sparsities)), "sparsities", self.sparsities,
               "increasing fractions in (0, 1)")
        _check(len(self.seeds) >= 1 and all(0 <= s <= SEED_MAX for s in self.seeds)
               and len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds,
               f"distinct integers in [0, {SEED_MAX}] (2**32-1)")
        _check(self.rst_iterations is None or 2 <= self.rst_iterations <= MAX_RST_ITERATIONS, "rst_iterations",
               self.rst_iterations, f"an integer in [2, {MAX_RST_ITERATIONS:,}] or none (the paper: 90,000)")
        _check(self.rst_eta_max > 0 and self.rst_lr > 0, "rst_eta_max/rst_lr", (self.rst_eta_max, self.rst_lr),
               "positive numbers")


PRESETS: dict[str, dict] = {
    "smoke": {"data": {"data": "synthetic", "n_train": 300, "n_test": 100, "val_size": 100},
              "model": {"model": "cnn6", "width": 0.125},
              "train": {"epochs": 1, "batch_size": 50, "eval_n": 100},
              "sweep": {"sparsities": [0.5, 0.9], "seeds": [0], "rst_iterations": 12, "rst_eta_max": 5.0}},
    # The exact CIFAR-10 subset (4,585 train / 500 validation / 1,017 test); cnn6 at width 0.25 (18 k weights);
    # 3 epochs of fine-tuning instead of 200; the transformation 142 iterations (2 epochs of batch 64) instead
    # of 90,000 (1/634), with the ceiling of eta raised from 1 to 5 so the squeezed weights still decay to
    # about 1 % of their RMS in that time. About 7 CPU-minutes for 2 seeds.
    "cpu": {"data": {"data": EXACT_SUBSET_SOURCE, "val_size": 500},
            "model": {"model": "cnn6", "width": 0.25},
            "train": {"epochs": 3, "eval_n": 500},
            "sweep": {"seeds": [0, 1], "rst_iterations": 142, "rst_eta_max": 5.0}},
    # The paper (docs/rst.md), GPU: a CIFAR ResNet, 200 epochs of fine-tuning, the full 90,000-iteration transformation.
    "paper": {"data": {"data": "cifar10", "val_size": 5000},
              "model": {"model": "resnet18", "width": 1.0},
              "train": {"epochs": 200, "eval_n": 5000},
              "sweep": {"seeds": [0, 1, 2], "methods": ["dense", "imp", "random", "rst", "rst-iter"]}},
}
