"""Benchmark configuration: sections composed, never copied.

A bench is a `BenchSetup` of the library's own sections (data, model, train, attack, prune) plus three of its
own: `bench` (which arms, their budgets, the search, the target), `structured` (the channel ticket) and
`final` (the final test-set evaluation). Each arm takes the sections it needs and changes only what makes it
that arm (its epochs, its attack), so a setting added to TrainConfig reaches every arm with no edit here, and
an arm's identity (its run directory) is the hash of exactly what it uses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..attacks import TRAINING_ATTACKS
from ..config import (AttackConfig, Config, ConfigError, DataConfig, ModelConfig, PruneConfig, TrainConfig, _check,
                      _choice)
from ..shared_data import EXACT_SUBSET_SOURCE
from .arms import ARMS


@dataclass(frozen=True)
class BenchConfig(Config):
    """What only the bench decides: the arms, their budgets, the ticket search and the time-to-target margin."""
    arms: Tuple[str, ...] = field(default=("dense", "ticket", "reinit"), metadata={
        "help": "arms to run (see `robustlth bench --help` for the list; dense and ticket are required)"})
    dense_epochs: int = field(default=100, metadata={"help": "epochs of dense PGD AT (the reference)"})
    ticket_epochs: int = field(default=40, metadata={"help": "epochs of PGD AT of the ticket (and its controls)"})
    search_epochs: int = field(default=20, metadata={"help": "epochs of the ticket search"})
    search_attack: str = field(default="fgsm", metadata={"help": "search training: " + TRAINING_ATTACKS.help()})
    search_lr: Optional[float] = field(default=None, metadata={"help": "none: VGG 0.01, ResNet/WRN 0.05"})
    winning_lr: float = field(default=0.1, metadata={"help": "search LR of the 'winning' control (usual LR)"})
    fast_at_attack: str = field(default="nfgsm", metadata={"help": "fast arms' single-step attack: fgsm_rs or nfgsm"})
    fast_at_epochs: Optional[int] = field(default=None, metadata={"help": "fast arms' epochs (none: the ticket's)"})
    rst_iterations: Optional[int] = field(default=None, metadata={
        "help": "rst arm: iterations of the natural transformation of a random ticket at the pruning ratio (none: "
                "90,000, RST's recipe; fewer rescale the eta ramp and hold)"})
    target_tolerance: float = field(default=0.01, metadata={
        "help": "time-to-target counts an arm as there within this of the dense final PGD-20"})

    def validate(self) -> None:
        for a in self.arms:
            ARMS.check(a, "arms")
        if "dense" not in self.arms or "ticket" not in self.arms:
            raise ConfigError(f"invalid arms={list(self.arms)!r}: expected dense and ticket among them")
        for name in ("dense_epochs", "ticket_epochs", "search_epochs"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, name, v, "an integer >= 1")
        TRAINING_ATTACKS.check(self.search_attack, "search_attack")
        _choice("fast_at_attack", self.fast_at_attack, ("fgsm_rs", "nfgsm"))
        _check(self.search_lr is None or self.search_lr > 0, "search_lr", self.search_lr, "a positive LR or none")
        _check(self.winning_lr > 0, "winning_lr", self.winning_lr, "a positive LR")
        _check(0 <= self.target_tolerance < 1, "target_tolerance", self.target_tolerance,
               "an accuracy margin in [0, 1)")
        for name in ("fast_at_epochs", "rst_iterations"):
            v = getattr(self, name)
            _check(v is None or v >= 1, name, v, "an integer >= 1 or none")


@dataclass(frozen=True)
class StructuredConfig(Config):
    """The structured (channel) ticket of the structured arms: flags --structured-keep, ..."""
    keep: float = field(default=0.44, metadata={
        "help": "fraction of each channel group kept (0.44: 80 %% of cnn6's FLOPs removed)"})
    criterion: str = field(default="bn", metadata={"help": "channel score: bn (|gamma|), l1 or l2 (filter norm)"})
    scope: str = field(default="layerwise", metadata={"help": "keep the fraction per layer, or global (with a floor)"})
    floor: float = field(default=0.1, metadata={"help": "global scope: fraction of channels every group keeps"})

    def validate(self) -> None:
        from ..pruning.structured import check_structured
        check_structured(self.keep, self.criterion, self.scope, self.floor)


@dataclass(frozen=True)
class FinalEvalConfig(Config):
    """The final test-set evaluation of every arm (ε is the attack section's)."""
    final_attacks: Tuple[str, ...] = field(default=("pgd20", "pgd100", "cw", "autoattack"),
                                           metadata={"help": "final test-set attacks (empty: no final evaluation)"})
    final_n: int = field(default=1000, metadata={"help": "test images of the final evaluation"})
    eval_batch_size: int = field(default=256, metadata={"help": "images per batch of the final attacks"})
    autoattack_n: Optional[int] = field(default=None, metadata={
        "help": "AutoAttack only on the first N final images (none: all); its worst case is reported too"})

    def validate(self) -> None:
        for name in ("final_n", "eval_batch_size"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, name, v, "an integer >= 1")
        _check(self.autoattack_n is None or self.autoattack_n >= 1, "autoattack_n", self.autoattack_n,
               "an integer >= 1 or none")


# The sections of a bench, in the order of --help and config.yaml; `structured` flags carry a prefix.
SECTIONS: dict[str, type[Config]] = {"data": DataConfig, "model": ModelConfig, "bench": BenchConfig,
                                     "train": TrainConfig, "attack": AttackConfig, "prune": PruneConfig,
                                     "structured": StructuredConfig, "final": FinalEvalConfig}
FLAG_PREFIX = {"structured": "structured-"}
NOT_FLAGS = {"train": ("epochs",)}  # each arm sets its own epochs (bench --dense-epochs, --ticket-epochs, ...)
# Defaults of the bench that differ from the sections' own: adversarial training of every arm.
BENCH_DEFAULTS = {"attack": {"attack": "pgd"}}


@dataclass(frozen=True)
class BenchSetup:
    """Everything one bench run depends on, as sections."""
    bench: BenchConfig = field(default_factory=BenchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(**BENCH_DEFAULTS["attack"]))
    prune: PruneConfig = field(default_factory=PruneConfig)
    structured: StructuredConfig = field(default_factory=StructuredConfig)
    final: FinalEvalConfig = field(default_factory=FinalEvalConfig)

    def __post_init__(self) -> None:
        if self.final.final_attacks:  # names checked with the budget they will run at
            from ..evaluate import validate_attack_names
            validate_attack_names(self.final.final_attacks, self.attack.eps)

    @classmethod
    def from_sections(cls, sections: dict) -> "BenchSetup":
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown bench section(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
        return cls(**{k: SECTIONS[k].from_dict(v) for k, v in sections.items()})

    def sections(self) -> dict[str, Config]:
        return {k: getattr(self, k) for k in SECTIONS}

    def to_dict(self) -> dict:
        return {k: v.to_dict() for k, v in self.sections().items()}

    def replace(self, **sections) -> "BenchSetup":
        return dataclasses.replace(self, **sections)

    @property
    def seed(self) -> int:
        return self.train.seed

    def with_seed(self, seed: int) -> "BenchSetup":
        return self.replace(train=self.train.replace(seed=seed))


# Flat `bench:` keys of schema-2 configs and the section each moved to (YAML files keep working; the flags
# kept their names except --train-attack, now --attack as in `robustlth train`).
MOVED_KEYS = {**{k: ("train", k) for k in ("lr", "batch_size", "weight_decay", "eval_n", "seed", "precision",
                                            "channels_last", "cuda_graphs")},
              "train_attack": ("attack", "attack"), "attack_steps": ("attack", "attack_steps"),
              "eps": ("attack", "eps"), "strategy": ("prune", "strategy"), "ratio": ("prune", "ratio"),
              **{f"structured_{k}": ("structured", k) for k in ("keep", "criterion", "scope", "floor")},
              **{k: ("final", k) for k in ("final_attacks", "final_n", "eval_batch_size", "autoattack_n")}}


def moved_to_sections(sections: dict) -> dict:
    """`sections` with the flat keys of an old-style `bench:` section moved to the sections they belong to."""
    bench = dict(sections.get("bench") or {})
    out = {k: (dict(v or {}) if k in SECTIONS else v) for k, v in sections.items()}
    for key in [k for k in bench if k in MOVED_KEYS]:
        section, name = MOVED_KEYS[key]
        if name in out.get(section, {}):
            raise ConfigError(f"{key} is given in both the bench and the {section} section; keep one "
                              f"({section}.{name})")
        out.setdefault(section, {})[name] = bench.pop(key)
    if "bench" in out:
        out["bench"] = bench
    return out


def merge_sections(*layers: dict) -> dict:
    """The bench's defaults, then each layer in turn (a preset, a YAML file, ...), section by section; old-style
    flat `bench:` keys go to their sections."""
    merged = {k: dict(v) for k, v in BENCH_DEFAULTS.items()}
    for layer in layers:
        for name, values in moved_to_sections(layer or {}).items():
            merged[name] = {**merged.get(name, {}), **values}
    return merged


# Presets: sections, each overridable from YAML (--config) and flags.
PRESETS = {
    # CI: seconds on CPU, synthetic data, every output produced.
    "smoke": {"data": {"data": "synthetic", "n_train": 400, "n_test": 100, "val_size": 100},
              "model": {"model": "cnn6", "width": 0.25},
              "bench": {"dense_epochs": 2, "ticket_epochs": 1, "search_epochs": 1,
                        "arms": ["dense", "ticket", "reinit"]},
              "train": {"batch_size": 50, "eval_n": 50},
              "attack": {"attack_steps": 2},
              "final": {"final_attacks": ["pgd5", "cw5"], "final_n": 50}},
    # Real CIFAR-10 (exact subset) on 2 CPU cores within ~35 minutes: the paper's proportions (dense 100
    # epochs vs 20 search + 40 ticket epochs) scaled to 20 vs 8 + 8. bf16 autocast and channels_last were
    # measured 2.6x faster than fp32 for this model with the same accuracy. Per-epoch curves on a held-out
    # validation split; the test images are only used for the final evaluation.
    "cpu": {"data": {"data": EXACT_SUBSET_SOURCE, "val_size": 500},
            "model": {"model": "cnn6", "width": 1.0},
            "bench": {"dense_epochs": 20, "ticket_epochs": 8, "search_epochs": 8, "search_lr": 0.01,
                      "arms": ["dense", "ticket", "reinit"]},
            "train": {"eval_n": 256, "precision": "bf16", "channels_last": True},
            "final": {"final_attacks": ["pgd20", "pgd100", "cw", "autoattack"], "final_n": 1000,
                      "autoattack_n": 200}},
    # One GPU (H100/H200) in at most 10 minutes end to end: ResNet-18 on full CIFAR-10 (torchvision download,
    # or offline `--data cifar10-jpeg:PATH`), the paper's proportions shortened, batch 512 (LR scaled linearly
    # from 0.1 at 128, with warm-up), bf16 + channels_last + CUDA graphs by default on CUDA, the final attacks
    # on the first 1,000 test images.
    "gpu": {"data": {"data": "cifar10", "val_size": 1000},
            "model": {"model": "resnet18", "width": 1.0},
            "bench": {"dense_epochs": 8, "ticket_epochs": 4, "search_epochs": 2,
                      "arms": ["dense", "ticket", "reinit", "fast_at"]},
            "train": {"batch_size": 512, "eval_n": 1000},
            "final": {"final_n": 1000, "eval_batch_size": 1000,
                      "final_attacks": ["pgd20", "pgd100", "cw", "autoattack"]}},
    # The paper's setting (GPU): VGG-16, 100 dense epochs vs 20 FGSM search + 40 ticket epochs, full CIFAR-10.
    "paper": {"data": {"data": "cifar10", "val_size": 5000},
              "model": {"model": "vgg16", "width": 1.0},
              "bench": {"dense_epochs": 100, "ticket_epochs": 40, "search_epochs": 20,
                        "arms": ["dense", "ticket", "reinit", "winning", "fast_at"]},
              "train": {"eval_n": 1000},
              "final": {"final_n": 10000}},
}

# Full-scale presets refuse fewer training images than this (`--allow-small-data` overrides).
MIN_TRAIN_IMAGES = {"gpu": 10_000, "paper": 10_000}
