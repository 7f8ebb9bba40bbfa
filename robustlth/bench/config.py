"""Benchmark hyperparameters and presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..config import ATTACK_MODES, PRECISIONS, STRATEGIES, Config, ConfigError, _check, _choice
from ..shared_data import EXACT_SUBSET_SOURCE

ARMS = ("dense", "ticket", "reinit", "random_prune", "winning", "fast_at",
        # beyond the paper: the ticket with fast single-step AT, structured (shrunk) tickets, RST (SPEC 3)
        "ticket_fast", "structured", "structured_fast", "rst")


@dataclass(frozen=True)
class BenchConfig(Config):
    arms: Tuple[str, ...] = field(default=("dense", "ticket", "reinit"), metadata={
        "help": "arms to run: " + ", ".join(ARMS) + " (dense and ticket are required)"})
    dense_epochs: int = field(default=100, metadata={"help": "epochs of dense PGD AT (the reference)"})
    ticket_epochs: int = field(default=40, metadata={"help": "epochs of PGD AT of the ticket (and its controls)"})
    search_epochs: int = field(default=20, metadata={"help": "epochs of the ticket search"})
    search_attack: str = field(default="fgsm", metadata={"help": "search training: " + ", ".join(ATTACK_MODES)})
    search_lr: Optional[float] = field(default=None, metadata={"help": "none: VGG 0.01, ResNet/WRN 0.05"})
    winning_lr: float = field(default=0.1, metadata={"help": "search LR of the 'winning' control (usual LR)"})
    strategy: str = "global_normalized"
    ratio: float = field(default=0.8, metadata={"help": "one-shot pruning ratio"})
    lr: float = field(default=0.1, metadata={"help": "peak LR of adversarial training"})
    batch_size: int = 128
    weight_decay: float = 1e-4
    train_attack: str = field(default="pgd", metadata={"help": "training of every arm but fast_at: pgd, or none "
                                                               "(natural training, for ablations)"})
    attack_steps: int = field(default=10, metadata={"help": "PGD steps of adversarial training"})
    eps: float = 8 / 255
    fast_at_attack: str = field(default="nfgsm", metadata={"help": "fast_at arm: fgsm_rs or nfgsm"})
    fast_at_epochs: Optional[int] = field(default=None, metadata={"help": "none: the ticket's epochs"})
    rst_iterations: Optional[int] = field(default=None, metadata={
        "help": "rst arm: iterations of the natural transformation of a random ticket at the pruning ratio (none: "
                "SPEC's 90,000; fewer rescale the eta ramp and hold)"})
    structured_keep: float = field(default=0.44, metadata={
        "help": "structured arms: fraction of each channel group kept (0.44: 80 % of cnn6's FLOPs removed)"})
    structured_criterion: str = field(default="bn", metadata={"help": "structured arms: channel score, bn "
                                                                      "(|gamma|), l1 or l2 (filter norm)"})
    structured_scope: str = field(default="layerwise", metadata={"help": "structured arms: keep the fraction per "
                                                                         "layer, or global (with a floor)"})
    structured_floor: float = field(default=0.1, metadata={"help": "structured arms, global scope: fraction of "
                                                                   "channels every group keeps at least"})
    eval_n: int = field(default=512, metadata={"help": "images of the per-epoch PGD-20 evaluation set"})
    final_attacks: Tuple[str, ...] = field(default=("pgd20", "pgd100", "cw", "autoattack"),
                                           metadata={"help": "final test-set attacks (empty: no final evaluation)"})
    final_n: int = field(default=1000, metadata={"help": "test images of the final evaluation"})
    eval_batch_size: int = field(default=256, metadata={"help": "images per batch of the final attacks"})
    autoattack_n: Optional[int] = field(default=None, metadata={
        "help": "AutoAttack only on the first N final images (none: all); its worst case is reported too"})
    target_tolerance: float = field(default=0.01, metadata={
        "help": "time-to-target counts an arm as there within this of the dense final PGD-20"})
    seed: int = 0
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on CUDA with bf16 support, else fp32), "
                                                             "fp32, bf16 or fp16"})
    channels_last: Optional[bool] = field(default=None, metadata={"help": "none: on for CUDA"})
    cuda_graphs: Optional[bool] = field(default=None, metadata={
        "help": "capture each training step as a CUDA graph (none: on for CUDA with fp32/bf16)"})

    def validate(self) -> None:
        for a in self.arms:
            _choice("arms", a, ARMS)
        if "dense" not in self.arms or "ticket" not in self.arms:
            raise ConfigError(f"invalid arms={list(self.arms)!r}: expected dense and ticket among them")
        _choice("train_attack", self.train_attack, ATTACK_MODES)
        for name in ("dense_epochs", "ticket_epochs", "search_epochs", "final_n", "eval_n", "batch_size",
                     "attack_steps", "eval_batch_size"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, name, v, "an integer >= 1")
        _choice("search_attack", self.search_attack, ATTACK_MODES)
        _choice("fast_at_attack", self.fast_at_attack, ("fgsm_rs", "nfgsm"))
        _check(0 <= self.ratio < 1, "ratio", self.ratio, "a pruning ratio in [0, 1)")
        _check(0 <= self.eps <= 1, "eps", self.eps, "a pixel budget in [0, 1]")
        _check(self.lr > 0 and (self.search_lr is None or self.search_lr > 0), "lr", self.lr, "positive LRs")
        _choice("precision", self.precision, PRECISIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        from ..pruning.structured import check_structured
        check_structured(self.structured_keep, self.structured_criterion, self.structured_scope,
                         self.structured_floor)
        _check(self.winning_lr > 0, "winning_lr", self.winning_lr, "a positive LR")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(0 <= self.target_tolerance < 1, "target_tolerance", self.target_tolerance,
               "an accuracy margin in [0, 1)")
        _check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        for name in ("fast_at_epochs", "autoattack_n", "rst_iterations"):
            v = getattr(self, name)
            _check(v is None or v >= 1, name, v, "an integer >= 1 or none")
        if self.final_attacks:  # empty: no final evaluation
            from ..evaluate import validate_attack_names
            validate_attack_names(self.final_attacks, self.eps)


# Presets: sections data / model / bench, each overridable from YAML (--config) and flags.
PRESETS = {
    # CI: seconds on CPU, synthetic data, every output produced.
    "smoke": {"data": {"data": "synthetic", "n_train": 400, "n_test": 100, "val_size": 100},
              "model": {"model": "cnn6", "width": 0.25},
              "bench": {"dense_epochs": 2, "ticket_epochs": 1, "search_epochs": 1, "batch_size": 50, "eval_n": 50,
                        "attack_steps": 2, "final_attacks": ["pgd5", "cw5"], "final_n": 50,
                        "arms": ["dense", "ticket", "reinit"]}},
    # Real CIFAR-10 (exact subset) on 2 CPU cores within ~35 minutes: the paper's proportions (dense 100
    # epochs vs 20 search + 40 ticket epochs) scaled to 20 vs 8 + 8. bf16 autocast and channels_last were
    # measured 2.6x faster than fp32 for this model with the same accuracy. Per-epoch curves on a held-out
    # validation split; the test images are only used for the final evaluation.
    "cpu": {"data": {"data": EXACT_SUBSET_SOURCE, "val_size": 500},
            "model": {"model": "cnn6", "width": 1.0},
            "bench": {"dense_epochs": 20, "ticket_epochs": 8, "search_epochs": 8, "search_lr": 0.01,
                      "eval_n": 256, "final_attacks": ["pgd20", "pgd100", "cw", "autoattack"], "final_n": 1000,
                      "autoattack_n": 200, "precision": "bf16", "channels_last": True,
                      "arms": ["dense", "ticket", "reinit"]}},
    # One GPU (H100/H200) in at most 10 minutes end to end: ResNet-18 on full CIFAR-10 (torchvision download,
    # or offline `--data cifar10-jpeg:PATH`), the paper's proportions shortened, batch 512 (LR scaled linearly
    # from 0.1 at 128, with warm-up), bf16 + channels_last + CUDA graphs by default on CUDA, the final attacks
    # on the first 1,000 test images.
    "gpu": {"data": {"data": "cifar10", "val_size": 1000},
            "model": {"model": "resnet18", "width": 1.0},
            "bench": {"dense_epochs": 8, "ticket_epochs": 4, "search_epochs": 2, "batch_size": 512,
                      "eval_n": 1000, "final_n": 1000, "eval_batch_size": 1000,
                      "final_attacks": ["pgd20", "pgd100", "cw", "autoattack"],
                      "arms": ["dense", "ticket", "reinit", "fast_at"]}},
    # The paper's setting (GPU): VGG-16, 100 dense epochs vs 20 FGSM search + 40 ticket epochs, full CIFAR-10.
    "paper": {"data": {"data": "cifar10", "val_size": 5000},
              "model": {"model": "vgg16", "width": 1.0},
              "bench": {"dense_epochs": 100, "ticket_epochs": 40, "search_epochs": 20, "eval_n": 1000,
                        "final_n": 10000, "arms": ["dense", "ticket", "reinit", "winning", "fast_at"]}},
}

# Full-scale presets refuse fewer training images than this (`--allow-small-data` overrides).
MIN_TRAIN_IMAGES = {"gpu": 10_000, "paper": 10_000}
