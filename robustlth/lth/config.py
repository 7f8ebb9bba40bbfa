"""Hyperparameters and presets of `robustlth lth`: the LTH paper's experiment on Conv-2/4/6 (docs/lth.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..config import SEED_MAX, Config, _check, _choice
from ..shared_data import EXACT_SUBSET_SOURCE  # the data-finding rule: docs/data.md

LTH_MODELS = ("conv2", "conv4", "conv6")
INITS = ("glorot", "default")
CONTROLS = ("reinit", "random")

# Natural training with SGD (the paper used Adam at 2e-4 / 3e-4: --optimizer adam --lr 2e-4), batch 60 as in
# the paper, constant LR given as is (not scaled from batch 128), no weight decay, no PGD evaluation.
TRAIN_DEFAULTS = {"lr": 0.05, "batch_size": 60, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant",
                  "lr_reference_batch": None, "eval_steps": 0, "eval_n": 500, "epochs": 30, "precision": "fp32"}


@dataclass(frozen=True)
class LTHConfig(Config):
    models: Tuple[str, ...] = field(default=LTH_MODELS, metadata={"help": "networks: conv2, conv4, conv6"})
    width: float = field(default=1.0, metadata={"help": "width multiplier of the networks"})
    seeds: Tuple[int, ...] = field(default=(0, 1), metadata={"help": "seeds (initialisation, batch order)"})
    rounds: int = field(default=5, metadata={"help": "pruned IMP rounds after the dense round 0 (0: the dense "
                                                     "round alone, no ticket and no controls)"})
    conv_rate: Optional[float] = field(default=None, metadata={
        "help": "fraction of each conv layer's remaining weights pruned per round (none: the paper's 0.10 for "
                "Conv-2/4, 0.15 for Conv-6)"})
    fc_rate: float = field(default=0.2, metadata={"help": "same for the hidden fully connected layers"})
    output_rate: Optional[float] = field(default=None, metadata={"help": "output layer (none: half of fc_rate)"})
    rate_scale: float = field(default=1.0, metadata={
        "help": "multiplies every rate above (CPU scale: reach 10-20 % of the weights in fewer rounds)"})
    eval_every: int = field(default=100, metadata={"help": "iterations between two validation evaluations (the "
                                                           "early-stopping iteration is the one of minimum "
                                                           "validation loss)"})
    controls: Tuple[str, ...] = field(default=CONTROLS, metadata={
        "help": "reinit (same mask, new initialisation), random (random mask with the ticket's per-layer "
                "sparsity, same initialisation)"})
    init: str = field(default="glorot", metadata={"help": "glorot (the paper: Glorot normal, zero biases) or "
                                                          "default (PyTorch's)"})
    robust_eps: Tuple[float, ...] = field(default=(), metadata={
        "help": "open question 1: PGD robust accuracy of every network at these L-inf budgets (empty: off)"})
    robust_n: int = field(default=500, metadata={"help": "test images of the PGD evaluation"})
    robust_steps: int = field(default=20, metadata={"help": "PGD steps (step size eps/4, random start)"})
    transfer: bool = field(default=False, metadata={
        "help": "open question 2: IMP on one half of the training images; each round's ticket (and its re-init) "
                "also trained on the other, disjoint half"})

    def validate(self) -> None:
        _check(len(self.models) >= 1, "models", self.models, "at least one of " + ", ".join(LTH_MODELS))
        for m in self.models:
            _choice("models", m, LTH_MODELS)
        _check(self.width > 0, "width", self.width, "a positive number")
        _check(len(self.seeds) >= 1 and all(0 <= s <= SEED_MAX for s in self.seeds)
               and len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds,
               f"distinct integers in [0, {SEED_MAX}] (2**32-1)")
        _check(isinstance(self.rounds, int) and 0 <= self.rounds <= 40, "rounds", self.rounds, "an integer in 0..40")
        for name in ("conv_rate", "output_rate"):
            v = getattr(self, name)
            _check(v is None or 0 <= v < 1, name, v, "a rate in [0, 1) or none")
        _check(0 <= self.fc_rate < 1, "fc_rate", self.fc_rate, "a rate in [0, 1)")
        _check(self.rate_scale > 0, "rate_scale", self.rate_scale, "a positive number")
        for layer, rate in self.rates("conv6").items():
            _check(rate < 1, "rate_scale", self.rate_scale, f"a scale that keeps the {layer} rate below 1 "
                                                            f"(it gives {rate:g})")
        _check(self.eval_every >= 1, "eval_every", self.eval_every, "an integer >= 1")
        for c in self.controls:
            _choice("controls", c, CONTROLS)
        _choice("init", self.init, INITS)
        _check(all(0 < e <= 1 for e in self.robust_eps), "robust_eps", self.robust_eps, "budgets in (0, 1]")
        _check(self.robust_n >= 1, "robust_n", self.robust_n, "an integer >= 1")
        _check(self.robust_steps >= 1, "robust_steps", self.robust_steps, "an integer >= 1")

    def rates(self, model: str) -> dict[str, float]:
        """Per-round pruning rates by layer kind for `model`, after rate_scale."""
        conv = self.conv_rate if self.conv_rate is not None else (0.15 if model == "conv6" else 0.10)
        out = self.output_rate if self.output_rate is not None else self.fc_rate / 2
        return {k: v * self.rate_scale for k, v in (("conv", conv), ("fc", self.fc_rate), ("output", out))}


PRESETS: dict[str, dict] = {
    # Seconds: synthetic images, narrow networks, two rounds; what the tests and CI run.
    "smoke": {"data": {"data": "synthetic", "n_train": 300, "n_test": 100, "val_size": 100, "augment": False},
              "train": {"epochs": 2, "batch_size": 50, "eval_n": 100},
              "lth": {"models": ["conv2"], "width": 0.125, "seeds": [0, 1], "rounds": 2, "eval_every": 3,
                      "rate_scale": 2.0}},
    # The exact CIFAR-10 subset: 2,000 of its 4,585 training images (class-balanced; fewer images overfit
    # sooner, so the minimum of the validation loss falls inside a short budget), 500 validation, 1,017 test;
    # 1/8-width networks; 8 epochs (264 iterations of batch 60) per training, evaluated every 16 iterations;
    # the paper's layer-wise rates x2.5 so 3 rounds reach 13-19 % of the weights: 60 trainings in about
    # 12 CPU-minutes.
    "cpu": {"data": {"data": EXACT_SUBSET_SOURCE, "val_size": 500, "n_train": 2000,
                     "augment": False},
            "train": {"epochs": 8, "eval_n": 500},
            "lth": {"width": 0.125, "seeds": [0, 1], "rounds": 3, "rate_scale": 2.5, "eval_every": 16}},
    # The paper's scale (GPU): full width, full CIFAR-10 with 5,000 validation images, 30 epochs (the paper:
    # 20k / 25k / 30k iterations of batch 60 = 24 / 30 / 36 epochs, with Adam), the paper's rates.
    "paper": {"data": {"data": "cifar10", "val_size": 5000, "augment": False},
              "train": {"epochs": 30, "eval_n": 5000},
              "lth": {"width": 1.0, "seeds": [0, 1, 2], "rounds": 15, "eval_every": 100}},
}
