"""The ledger's experiments: each a plan of cells at a scale, registered by name in `EXPERIMENTS`.

`natural_claims` (CPU): the paper's natural-training claims at its step counts: full CIFAR-10 (the offline
JPEG copy, 45,000 train / 5,000 validation), batch 128, so one epoch is 351 SGD steps as in the paper's
352 (the loader drops the last partial batch of 72 images); VGG-16 with every layer kept and its channels
divided by 8 (the paper's network, shrunk to fit two CPU cores: never fewer steps).

`pgd_claims_gpu` (GPU): the PGD-AT claims, paper-lite: VGG-16 at full width, PGD-10 AT, FGSM search at LR
0.01 for 20 epochs, dense 30 and 15 epochs against the ticket, its re-initialisation and N-FGSM fast AT at
15; final PGD-20 and CW on the first 1,000 bit-exact test images, AutoAttack on the same images for dense 30,
ticket 15 and the fast ticket. Every cell is one training of at most about five H100 minutes.

Both have a `quick` scale: the same plan in seconds on CPU (tiny data, one epoch), for the test suite.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

from ..bench.config import BenchSetup, merge_sections
from ..registry import Registry
from ..shared_data import EXACT_SUBSET_NAME, JPEG_NAME, named_data_file
from .cells import Cell



@dataclass(frozen=True)
class Experiment(ABC):
    """A plan of cells. `folder`: where its records and tables live under the results root; `device`: where
    its full-scale cells run; `unit_seconds`: a first guess of one cost unit's seconds on that device, used
    for the budget until cells of this machine have been timed."""
    name: ClassVar[str]
    device: ClassVar[str]
    unit_seconds: ClassVar[float]
    scale: str = "full"

    def folder(self) -> str:
        return self.name if self.scale == "full" else f"{self.name}-{self.scale}"

    @abstractmethod
    def cells(self, seeds: list[int]) -> list[Cell]:
        """The plan, in the order its cells run."""

    def cell_device(self) -> str:
        return self.device if self.scale == "full" else "cpu"


EXPERIMENTS: Registry[Callable[..., Experiment]] = Registry("experiment")


def _setup(*layers: dict) -> BenchSetup:
    return BenchSetup.from_sections(merge_sections(*layers))


# ----------------------------------------------------------------------------------------------------
# Natural training at the paper's step counts (CPU).

NATURAL = {
    "full": {
        "data": {"data": f"cifar10-jpeg:{named_data_file(JPEG_NAME)}", "val_size": 5000},
        "model": {"model": "vgg16", "width": 0.125},
        # Retraining budget of the convergence cells (epochs 1 and 5 are read from their curves); the search
        # trains 8 epochs with LR drops at 4 and 6, where its validation accuracy has flattened (the search
        # curves in the results show it).
        "bench": {"search_epochs": 8, "ticket_epochs": 5, "dense_epochs": 5, "search_attack": "none",
                  "search_lr": 0.01, "winning_lr": 0.1},
        "train": {"eval_n": 5000, "eval_steps": 0, "precision": "fp32", "channels_last": True},
        "attack": {"attack": "none"},
        "final": {"final_attacks": ["fgsm"], "final_n": 10000},
        "lrs": [0.005, 0.01, 0.05, 0.1], "ratios": [0.5, 0.8, 0.9, 0.97], "widths": [0.0625, 0.125, 0.25],
        "budgets": [2, 4, 8, 16],
    },
    "quick": {
        "data": {"data": f"npz:{named_data_file(EXACT_SUBSET_NAME)}", "val_size": 50, "n_train": 128,
                 "n_test": 50},
        "model": {"model": "vgg16", "width": 0.0625},
        "bench": {"search_epochs": 1, "ticket_epochs": 2, "dense_epochs": 2, "search_attack": "none",
                  "search_lr": 0.01, "winning_lr": 0.1},
        "train": {"eval_n": 50, "eval_steps": 0, "precision": "fp32", "batch_size": 64},
        "attack": {"attack": "none"},
        "final": {"final_attacks": ["fgsm"], "final_n": 50},
        "lrs": [0.01, 0.1], "ratios": [0.8, 0.9], "widths": [0.0625], "budgets": [1, 2],
    },
}
BOOSTING_LR, WINNING_LR = 0.01, 0.1  # the paper's boosting-ticket search LR (VGG-16) and the usual one


def _width_cost(width: float, base: float) -> float:
    """An epoch's cost relative to the base width (measured on this CPU: 1/4 of the channels cost about 0.4,
    twice the channels about 2.7 of the base epoch)."""
    return (width / base) ** 1.45


@EXPERIMENTS.register("natural_claims")
@dataclass(frozen=True)
class NaturalClaims(Experiment):
    name: ClassVar[str] = "natural_claims"
    device: ClassVar[str] = "cpu"
    unit_seconds: ClassVar[float] = 40.0

    def cells(self, seeds: list[int]) -> list[Cell]:
        p = NATURAL[self.scale]
        base = _setup({k: p[k] for k in ("data", "model", "bench", "train", "attack", "final")})
        w0, ratio0 = base.model.width, base.prune.ratio
        budget0 = base.bench.ticket_epochs
        out: list[Cell] = []

        def add(role: str, kind: str, arm: str, seed: int, lr=None, ratio=None, width=None, budget=None, **tags):
            s = base.with_seed(seed)
            width = w0 if width is None else width
            bench = {"search_lr": lr} if lr is not None else {}
            if budget is not None:
                bench.update(ticket_epochs=budget, dense_epochs=budget)
            s = s.replace(bench=s.bench.replace(**bench), model=s.model.replace(width=width),
                          prune=s.prune.replace(ratio=ratio0 if ratio is None else ratio))
            epochs = s.bench.search_epochs if kind == "search" else s.bench.ticket_epochs
            tags = {"role": role, "search_lr": lr, "ratio": ratio0 if ratio is None else ratio, "width": width,
                    "budget": s.bench.ticket_epochs if kind == "arm" else None, **tags}
            name = f"{role}.s{seed}"
            if not any(c.name == name for c in out):
                out.append(Cell(name, kind, arm, s, self.cell_device(), epochs * _width_cost(width, w0), tags))

        def tag(x: float) -> str:
            return f"{x:g}"

        for seed in seeds:
            # (a) the boost: the two searches, dense, the boosting and winning tickets and the re-init control.
            for lr in (BOOSTING_LR, WINNING_LR):
                add(f"search_lr{tag(lr)}", "search", "ticket", seed, lr=lr)
            add("dense", "arm", "dense", seed)
            for lr in (BOOSTING_LR, WINNING_LR):
                add(f"ticket_lr{tag(lr)}", "arm", "ticket", seed, lr=lr)
            add(f"reinit_lr{tag(BOOSTING_LR)}", "arm", "reinit", seed, lr=BOOSTING_LR)
            # (e) the budget sweep: boosting vs winning ticket, LR drops at 50 / 75 % of each budget.
            for b in p["budgets"]:
                for lr in (BOOSTING_LR, WINNING_LR):
                    add(f"ticket_lr{tag(lr)}" + ("" if b == budget0 else f"_b{b}"), "arm", "ticket", seed, lr=lr,
                        budget=b)
            # (b) search LR.
            for lr in p["lrs"]:
                add(f"search_lr{tag(lr)}", "search", "ticket", seed, lr=lr)
                add(f"ticket_lr{tag(lr)}", "arm", "ticket", seed, lr=lr)
            # (c) pruning ratio, from the same searches.
            for r in p["ratios"]:
                for lr in (BOOSTING_LR, WINNING_LR):
                    add(f"ticket_lr{tag(lr)}" + ("" if r == ratio0 else f"_r{tag(r)}"), "arm", "ticket", seed,
                        lr=lr, ratio=r)
            # (d) width: each width its own searches.
            for w in p["widths"]:
                for lr in (BOOSTING_LR, WINNING_LR):
                    suffix = "" if w == w0 else f"_w{tag(w)}"
                    add(f"search_lr{tag(lr)}{suffix}", "search", "ticket", seed, lr=lr, width=w)
                    add(f"ticket_lr{tag(lr)}{suffix}", "arm", "ticket", seed, lr=lr, width=w)
        return out


# ----------------------------------------------------------------------------------------------------
# PGD adversarial training, paper-lite (GPU).

PGD = {
    "full": {
        "data": {"data": f"cifar10-jpeg:{named_data_file(JPEG_NAME)}", "val_size": 5000,
                 "test_data": f"npz:{named_data_file(EXACT_SUBSET_NAME)}"},
        "model": {"model": "vgg16", "width": 1.0},
        "bench": {"search_epochs": 20, "search_attack": "fgsm", "search_lr": 0.01, "ticket_epochs": 15,
                  "dense_epochs": 30, "fast_at_attack": "nfgsm", "fast_at_epochs": 15},
        "train": {"eval_n": 1000},
        "attack": {"attack": "pgd", "attack_steps": 10},
        "final": {"final_attacks": ["pgd20", "cw"], "final_n": 1000, "eval_batch_size": 1000,
                  "autoattack_n": 1000},
        "short_dense": 15,
    },
    "quick": {
        "data": {"data": f"npz:{named_data_file(EXACT_SUBSET_NAME)}", "val_size": 50, "n_train": 128},
        "model": {"model": "vgg16", "width": 0.0625},
        "bench": {"search_epochs": 1, "search_attack": "fgsm", "search_lr": 0.01, "ticket_epochs": 1,
                  "dense_epochs": 2, "fast_at_attack": "nfgsm", "fast_at_epochs": 1},
        "train": {"eval_n": 50, "eval_steps": 2, "batch_size": 64, "precision": "fp32"},
        "attack": {"attack": "pgd", "attack_steps": 1},
        "final": {"final_attacks": ["pgd2", "cw2"], "final_n": 30},
        "short_dense": 1,
    },
}


@EXPERIMENTS.register("pgd_claims_gpu")
@dataclass(frozen=True)
class PgdClaimsGpu(Experiment):
    name: ClassVar[str] = "pgd_claims_gpu"
    device: ClassVar[str] = "cuda"
    unit_seconds: ClassVar[float] = 10.0  # one PGD-10 epoch of VGG-16 on an H100, a guess before the first cell

    def cells(self, seeds: list[int]) -> list[Cell]:
        p = PGD[self.scale]
        base = _setup({k: p[k] for k in ("data", "model", "bench", "train", "attack", "final")})
        b, out = base.bench, []
        pgd = base.attack.attack_steps + 1  # forward-backward passes per PGD-AT step; single-step AT: 2
        for seed in seeds:
            s = base.with_seed(seed)
            # AutoAttack for dense (full budget), the ticket and the fast ticket; the quick (CPU) plan leaves it
            # out, since AutoAttack on CPU takes minutes for a handful of images.
            aa = s.replace(final=s.final.replace(final_attacks=(*s.final.final_attacks, "autoattack"))) \
                if self.scale == "full" else s
            plain = s.replace(final=s.final.replace(autoattack_n=None))
            short = plain.replace(bench=b.replace(dense_epochs=p["short_dense"]))
            for name, kind, arm, epochs, passes, setup in (
                    ("search_fgsm", "search", "ticket", b.search_epochs, 2, plain),
                    (f"dense_{b.dense_epochs}", "arm", "dense", b.dense_epochs, pgd, aa),
                    (f"ticket_{b.ticket_epochs}", "arm", "ticket", b.ticket_epochs, pgd, aa),
                    (f"ticket_fast_{b.fast_at_epochs}", "arm", "ticket_fast", b.fast_at_epochs, 2, aa),
                    (f"dense_{p['short_dense']}", "arm", "dense", p["short_dense"], pgd, short),
                    (f"reinit_{b.ticket_epochs}", "arm", "reinit", b.ticket_epochs, pgd, plain),
                    (f"fast_at_{b.fast_at_epochs}", "arm", "fast_at", b.fast_at_epochs, 2, plain)):
                out.append(Cell(f"{name}.s{seed}", kind, arm, setup, self.cell_device(), epochs * passes / 11,
                                {"role": name, "epochs": epochs}))
        return out
