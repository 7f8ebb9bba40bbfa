"""Hyperparameters and presets of `robustlth locality` (docs/locality.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from ..config import SEED_MAX, Config, _check
from ..shared_data import EXACT_SUBSET_SOURCE

# Plain SGD at the paper's LR and batch (the LR as given, not scaled from batch 128); no augmentation; no PGD
# evaluation (natural training only).
TRAIN_DEFAULTS = {"lr": 0.1, "batch_size": 1000, "lr_reference_batch": None, "momentum": 0.0, "weight_decay": 0.0,
                  "schedule": "constant", "eval_steps": 0, "eval_n": 10_000, "epochs": 20}


@dataclass(frozen=True)
class LocalityConfig(Config):
    ratio: float = field(default=0.3, metadata={"help": "fraction of each hidden layer's remaining weights pruned "
                                                        "per round (the output layer stays dense)"})
    max_rounds: int = field(default=30, metadata={"help": "IMP rounds at most (the stopping rule usually ends "
                                                          "IMP earlier)"})
    stop_units: float = field(default=0.2, metadata={"help": "stop when a pruned layer has at most this fraction "
                                                             "of its units still connected"})
    rewind_iteration: int = field(default=1000, metadata={"help": "rewind survivors to the weights after this many "
                                                                  "optimiser steps of the dense run"})
    oneshot: bool = field(default=True, metadata={"help": "control: one-shot pruning to the analysed round's "
                                                          "sparsity"})
    random_mask: bool = field(default=True, metadata={"help": "control: a random mask with the analysed round's "
                                                              "per-layer sparsity"})
    data_fraction: float = field(default=0.0, metadata={"help": "control: IMP again on this fraction of the "
                                                                "training images, with as many steps per round (0: "
                                                                "off; the paper: 0.3)"})
    superclasses: int = field(default=0, metadata={"help": "control: IMP again with the 10 labels merged into this "
                                                           "many random superclasses (0: off; e.g. 2)"})
    label_seed: int = field(default=0, metadata={"help": "seed of the random superclass partition"})
    radius: int = field(default=3, metadata={"help": "locality score window: pairs with max(|dy|,|dx|) <= radius"})
    remove_units: Tuple[int, ...] = field(default=(8, 32, 64, 128, 256), metadata={
        "help": "numbers of most / least connected first-layer units removed for the accuracy test"})
    gallery: int = field(default=16, metadata={"help": "most connected units drawn in the gallery"})

    def validate(self) -> None:
        _check(0 < self.ratio < 1, "ratio", self.ratio, "a pruning ratio in (0, 1)")
        _check(isinstance(self.max_rounds, int) and self.max_rounds >= 1, "max_rounds", self.max_rounds,
               "an integer >= 1")
        _check(0 <= self.stop_units < 1, "stop_units", self.stop_units, "a fraction in [0, 1)")
        _check(isinstance(self.rewind_iteration, int) and self.rewind_iteration >= 0, "rewind_iteration",
               self.rewind_iteration, "an integer >= 0")
        _check(0 <= self.data_fraction < 1, "data_fraction", self.data_fraction, "a fraction in [0, 1) (0: off)")
        _check(isinstance(self.superclasses, int) and (self.superclasses == 0 or 2 <= self.superclasses <= 5),
               "superclasses", self.superclasses, "0 (off) or an integer in 2..5")
        _check(0 <= self.label_seed <= SEED_MAX, "label_seed", self.label_seed, f"an integer in [0, {SEED_MAX}]")
        _check(isinstance(self.radius, int) and 0 <= self.radius <= 31, "radius", self.radius, "an integer in 0..31")
        _check(all(isinstance(k, int) and k >= 1 for k in self.remove_units), "remove_units", self.remove_units,
               "positive integers")
        _check(isinstance(self.gallery, int) and 1 <= self.gallery <= 64, "gallery", self.gallery,
               "an integer in 1..64")


PRESETS: dict[str, dict] = {
    # Seconds: synthetic images, a narrow FCN; what the tests and CI run.
    "smoke": {"data": {"data": "synthetic", "n_train": 400, "n_test": 200, "val_size": 100, "augment": False},
              "model": {"model": "fcn", "width": 0.125},
              "train": {"epochs": 2, "batch_size": 100, "eval_n": 100},
              "locality": {"max_rounds": 3, "rewind_iteration": 2, "remove_units": [4, 16], "gallery": 4,
                           "data_fraction": 0.5, "superclasses": 2}},
    # This project's 2-core CPU: the exact CIFAR-10 subset (see benchmarks/results/locality/).
    # A quarter-width FCN (256 units per hidden layer), 10 epochs = 40 steps per round, 12 rounds at most.
    "cpu": {"data": {"data": EXACT_SUBSET_SOURCE, "val_size": 500, "augment": False},
            "model": {"model": "fcn", "width": 0.25},
            "train": {"epochs": 10, "eval_n": 500},
            "locality": {"max_rounds": 12, "rewind_iteration": 4, "data_fraction": 0.3, "superclasses": 2,
                         "remove_units": [8, 16, 32, 64, 128, 192]}},
    # The paper's recipe (docs/locality.md) on the full data set.
    "paper": {"data": {"data": "cifar10", "val_size": 5000, "augment": False},
              "model": {"model": "fcn", "width": 1.0},
              "train": {"epochs": 100},
              "locality": {"rewind_iteration": 1000, "data_fraction": 0.3, "superclasses": 2}},
}
