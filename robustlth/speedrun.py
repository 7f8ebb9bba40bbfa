"""`robustlth speedrun`: a robust CIFAR-10 model as fast as robustlth trains one, and what it reaches.

The recipe (the `full` preset; every value is a flag or a YAML key, and each ingredient can be turned off to
measure what it buys):

- PreActResNet-18 (`--model resnet18` for ResNet-18), N-FGSM (noise uniform in ±2ε, one step of ε, no projection
  to the ε-ball; `--attack fgsm_rs` for FGSM-RS), ε = 8/255, the catastrophic-overfitting guard on;
- a one-cycle LR (linear 0 -> peak over 40 % of the budget, then linear to 0), SGD with momentum 0.9 and weight
  decay 5e-4, batch 512 with the LR given at batch 128 and scaled linearly (`--lr`, `--lr-reference-batch`);
- label smoothing 0.1 (`--label-smoothing 0`), an EMA of the weights and BatchNorm statistics (`--ema 0`);
- bf16 autocast, channels_last and the CUDA-graph step (the single-step attack captured with the rest) on a GPU,
  by default there and off elsewhere;
- the training images on the device, random crop and flip done there per batch (`robustlth.data.TrainLoader`).

What it reports: the training wall-clock (the data already on the device; per-epoch evaluation, the guard and the
final evaluation excluded and reported on their own) against the robust accuracy reached: standard AutoAttack at
ε = 8/255 on the first 1,000 test images of the bit-exact CIFAR-10 subset, with clean accuracy and PGD-50 beside
it, each attack's own accuracy (every attack runs on every clean-correct image) and the per-image worst case.
Training reads the full JPEG copy of CIFAR-10 (`cifar10-jpeg:`, offline) with the exact subset as its test split
(`DataConfig.test_data`); `--data cifar10` trains on torchvision's download instead.

Ticket mode (`--ticket boosting` or `--ticket structured`): a short ticket search first (the recipe at the search
LR for `--search-epochs`, through `robustlth.pruning.find_ticket` as the bench's ticket arms run it, their
`TicketArm` / `StructuredArm` building the ticket), then the recipe trains the ticket; the search's seconds are
counted in the training time and reported on their own. benchmarks/speedrun.py runs the recipe with and without a
ticket and says which reaches the robust accuracy first.

Curve mode (`--curve 5,10,15`): one run per epoch budget, each with its one-cycle LR over its own budget, gives
robust accuracy against training seconds. Every run is a stage (`robustlth.stages`): cached, resumable, shared
between calls (a curve reuses the single run of the same budget); the speedrun itself is a stage whose directory
holds `report.md`, `curve.csv` and `curve.png`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Tuple

import torch

from .bench.config import FinalEvalConfig
from .config import (PRECISIONS, AttackConfig, Config, ConfigError, DataConfig, ModelConfig, TrainConfig, _check,
                     _choice)
from .data import Dataset, as_float, iterations_per_epoch, load_dataset
from .device import resolve_precision
from .evaluate import evaluate_robustness
from .models import build_checked_model, build_model
from .progress import tee_log
from .runs import RunDir, atomic_write_text, csv_text, environment
from .shared_data import EXACT_SUBSET_SOURCE, JPEG_NAME, data_folders, named_data_file
from .stages import Result, Stage, run_stage, stage_dir
from .training import RunContext, seed_everything, train
from .training.checkpoint import describe_run

Log = Optional[Callable[[str], None]]
JPEG_SOURCE = f"cifar10-jpeg:{named_data_file(JPEG_NAME)}"


TICKETS = ("none", "boosting", "structured")
# The bench arm (robustlth.bench.arms) that finds and builds each kind of ticket.
TICKET_ARMS = {"boosting": "ticket", "structured": "structured"}
TICKET_FIELDS = ("search_epochs", "search_lr", "search_attack", "ticket_ratio", "ticket_keep")


@dataclass(frozen=True)
class SpeedrunConfig(Config):
    """What only the speedrun decides: the curve's budgets, the final evaluation's precision, and the ticket."""
    curve: Tuple[int, ...] = field(default=(), metadata={
        "help": "curve mode: epoch budgets, each a run of its own with the one-cycle LR over that budget (the "
                "--epochs budget is always one of them); empty: one run"})
    eval_precision: str = field(default="fp32", metadata={
        "help": "precision of the final attacks: fp32 (the reference setting for AutoAttack), or auto/bf16/fp16"})
    ticket: str = field(default="none", metadata={
        "help": "train a ticket found by a short search instead of the dense network: none, boosting (a sparse "
                "mask, the survivors at θ0) or structured (a shrunk dense network: channels ranked on the searched "
                "network, the survivors at θ0); the search's seconds count in the training time"})
    search_epochs: int = field(default=2, metadata={
        "help": "--ticket: epochs of the search (the recipe at the search LR; shared by every budget of a curve)"})
    search_lr: Optional[float] = field(default=None, metadata={
        "help": "--ticket: peak LR of the search at --lr-reference-batch, scaled like --lr (none: the boosting "
                "ticket's, 0.05 for ResNets, 0.01 otherwise)"})
    search_attack: Optional[str] = field(default=None, metadata={
        "help": "--ticket: the search's training attack (none: the recipe's, --attack)"})
    ticket_ratio: float = field(default=0.8, metadata={
        "help": "--ticket boosting: fraction of the weights pruned (global_normalized, one shot)"})
    ticket_keep: float = field(default=0.5, metadata={
        "help": "--ticket structured: fraction of each channel group kept (a ResNet's groups are its blocks' inner "
                "channels: 0.5 keeps about half of PreActResNet-18's MACs)"})

    def validate(self) -> None:
        _check(all(isinstance(e, int) and e >= 1 for e in self.curve), "curve", self.curve,
               "epoch budgets, integers >= 1")
        _choice("eval_precision", self.eval_precision, PRECISIONS)
        _choice("ticket", self.ticket, TICKETS)
        _check(isinstance(self.search_epochs, int) and self.search_epochs >= 1, "search_epochs", self.search_epochs,
               "an integer >= 1")
        _check(self.search_lr is None or self.search_lr > 0, "search_lr", self.search_lr, "a positive LR or none")
        if self.search_attack is not None:
            from .attacks import TRAINING_ATTACKS
            TRAINING_ATTACKS.check(self.search_attack, "search_attack")
        _check(0 < self.ticket_ratio < 1, "ticket_ratio", self.ticket_ratio, "a pruning ratio in (0, 1)")
        _check(0 < self.ticket_keep < 1, "ticket_keep", self.ticket_keep, "a fraction of channels in (0, 1)")

    def used(self) -> "SpeedrunConfig":
        """This config with the ticket settings the run does not read at their defaults: without a ticket none
        of them, a boosting ticket no keep, a structured one no ratio (so they never change a run's identity)."""
        unused = {"none": TICKET_FIELDS, "boosting": ("ticket_keep",), "structured": ("ticket_ratio",)}[self.ticket]
        defaults = SpeedrunConfig()
        return self.replace(**{k: getattr(defaults, k) for k in unused})


# The sections of a speedrun, in the order of --help and config.yaml.
SECTIONS: dict[str, type[Config]] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
                                     "attack": AttackConfig, "final": FinalEvalConfig, "speedrun": SpeedrunConfig}

# The recipe. The values not yet measured on a GPU (batch 512 with the LR scaled, EMA 0.99, label smoothing 0.1,
# 15 epochs) are the starting point the benchmark (benchmarks/speedrun.py) is there to check, ingredient by ingredient.
RECIPE = {
    "model": {"model": "preactresnet18", "width": 1.0},
    "train": {"epochs": 15, "batch_size": 512, "lr": 0.1, "lr_reference_batch": 128, "momentum": 0.9,
              "weight_decay": 5e-4, "schedule": "onecycle", "label_smoothing": 0.1, "ema": 0.99, "guard": True,
              "eval_n": 500, "eval_steps": 0},
    "attack": {"attack": "nfgsm", "eps": 8 / 255},
    "final": {"final_attacks": ["pgd50", "autoattack"], "final_n": 1000, "eval_batch_size": 500},
}
PRESETS: dict[str, dict] = {
    # Full CIFAR-10 (the offline JPEG copy) for training; the exact subset's bit-exact test images for evaluation.
    "full": {**RECIPE, "data": {"data": JPEG_SOURCE, "test_data": EXACT_SUBSET_SOURCE}},
    # The dry run (any device, seconds): 128 images of the exact subset, a 1/8-width network, one epoch of 4 steps,
    # PGD-50 and AutoAttack on 8 test images.
    "quick": {**RECIPE, "data": {"data": EXACT_SUBSET_SOURCE, "n_train": 128},
              "model": {"model": "preactresnet18", "width": 0.125},
              "train": {**RECIPE["train"], "epochs": 1, "batch_size": 32, "ema": 0.9, "eval_n": 32},
              "final": {"final_attacks": ["pgd50", "autoattack"], "final_n": 8, "eval_batch_size": 8},
              "speedrun": {"search_epochs": 1}},
}


@dataclass(frozen=True)
class SpeedrunSetup:
    """Everything a speedrun depends on, as sections."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    final: FinalEvalConfig = field(default_factory=FinalEvalConfig)
    speedrun: SpeedrunConfig = field(default_factory=SpeedrunConfig)

    def __post_init__(self) -> None:
        if self.final.final_attacks:
            from .evaluate import validate_attack_names
            validate_attack_names(self.final.final_attacks, self.attack.eps)

    @classmethod
    def from_preset(cls, preset: str = "full", **overrides: dict) -> "SpeedrunSetup":
        """A preset's sections with `overrides` (section -> values) on top."""
        sections = {k: {**PRESETS[preset].get(k, {}), **overrides.get(k, {})} for k in SECTIONS}
        return cls(**{k: SECTIONS[k].from_dict(v) for k, v in sections.items()})

    def budgets(self) -> list[int]:
        return sorted(set(self.speedrun.curve) | {self.train.epochs})

    def sections(self) -> dict[str, Config]:
        return {k: getattr(self, k) for k in SECTIONS}

    def with_ticket(self, ticket: str) -> "SpeedrunSetup":
        """The same speedrun with another `ticket` setting (the benchmark runs the recipe with and without)."""
        return dataclasses.replace(self, speedrun=self.speedrun.replace(ticket=ticket))

    def ticket_arm(self):
        """The bench arm that finds and builds this speedrun's ticket (None: no ticket)."""
        from .bench.arms import ARMS
        t = self.speedrun.ticket
        return None if t == "none" else ARMS[TICKET_ARMS[t]]()

    def bench_setup(self):
        """The speedrun's settings as a bench setup, so the bench's ticket arms search and build its ticket: the
        search is the recipe (train section) at the search LR for search_epochs, with the search attack; the
        boosting ticket prunes ticket_ratio of the weights, the structured one keeps ticket_keep of the channels
        (its search's pruning settings stay at their defaults: it uses the searched network, not the mask)."""
        from .bench.config import BenchConfig, BenchSetup, StructuredConfig
        from .config import PruneConfig
        t = self.speedrun
        return BenchSetup(bench=BenchConfig(search_epochs=t.search_epochs, search_lr=t.search_lr,
                                            search_attack=t.search_attack or self.attack.attack),
                          data=self.data, model=self.model, train=self.train, attack=self.attack,
                          prune=PruneConfig(ratio=t.ticket_ratio) if t.ticket == "boosting" else PruneConfig(),
                          structured=StructuredConfig(keep=t.ticket_keep), final=self.final)


def check_data_files(data: DataConfig) -> None:
    """The training and test files must exist (one line naming the data folders when a preset's file is missing)."""
    for what, path in (("training data", data.file()), ("test data", data.test_file())):
        if path is not None and not path.is_file():
            where = " or ".join(str(f) for f in data_folders())
            raise ConfigError(f"`robustlth speedrun` reads its {what} from {path}, which is not there (data folders: "
                              f"{where}); pass --data cifar10 (torchvision download; with --test-data npz:PATH to the "
                              "exact subset) or --data/--test-data to your copies")


# ----------------------------------------------------------------------------------------------------
# One budget: training, then the final evaluation.

@dataclass
class SpeedrunPoint(Result):
    epochs: int  # the budget
    epochs_trained: int  # fewer when the guard stopped the run
    train_time: float  # seconds of training (data on the device; evaluation excluded)
    epoch_eval_time: float  # seconds of per-epoch evaluation and the overfitting guard (excluded from train_time)
    final_eval_time: float  # seconds of the final attacks (excluded from train_time)
    images_per_second: float
    n: int  # test images of the final evaluation
    clean: Optional[float]
    accuracy: dict  # each final attack's own accuracy (every attack ran on every clean-correct image)
    worst_case: Optional[float]  # per image, correct under every attack
    guard_fired: bool
    stopped: Optional[str]
    settings: dict
    train_config: dict
    history: list
    final: Optional[dict]
    # With --ticket: the search's seconds (its training, evaluation excluded, and the pruning), counted in
    # train_time, which is then search_time + the ticket's training; and what was trained (see `ticket_record`).
    search_time: float = 0.0
    ticket: Optional[dict] = None

    @property
    def robust(self) -> Optional[float]:
        """The headline robust accuracy: AutoAttack's where it ran, else the worst case over the attacks run."""
        return self.accuracy.get("autoattack", self.worst_case)

    @property
    def recipe_time(self) -> float:
        """Seconds of the recipe's training alone (the ticket's, when there is one): train_time less the search."""
        return self.train_time - self.search_time

    def row(self) -> dict:
        """The point's row of curve.csv."""
        searched = {"search_s": round(self.search_time, 3), "ticket": self.ticket["kind"]} if self.ticket else {}
        return {"epochs": self.epochs, "epochs_trained": self.epochs_trained, "train_s": round(self.train_time, 3),
                **searched, "images_per_s": round(self.images_per_second, 1), "n": self.n, "clean": self.clean,
                **{a: v for a, v in self.accuracy.items()}, "worst_case": self.worst_case,
                "guard_fired": self.guard_fired, "epoch_eval_s": round(self.epoch_eval_time, 3),
                "final_eval_s": round(self.final_eval_time, 3)}


@dataclass
class SpeedrunTraining(Stage):
    """One budget of the recipe: its training (checkpointed every epoch, resumable) and final evaluation. The
    trained model (the weight average when `ema` is on) is the run's checkpoint.pt, so `robustlth eval` opens it
    on the same test images.

    With a ticket (`speedrun.ticket`), the ticket search runs first, as the bench's ticket arms run it (a
    `TicketSearch` stage beside this one under the same root, so every budget of a curve shares it), the arm
    builds the ticket (the boosting ticket: θ0 under its mask; the structured one: the shrunk network at θ0), and
    the recipe trains it unchanged (its one-cycle LR, not the ticket papers' warm-up, so only the ticket differs);
    the search's seconds count in `train_time`."""
    kind: ClassVar[str] = "speedrun-run"
    result: ClassVar[type] = SpeedrunPoint
    setup: SpeedrunSetup
    epochs: int
    data: Optional[Dataset] = field(default=None, compare=False)
    progress: bool = field(default=False, compare=False)
    log: Log = field(default=None, compare=False)

    def train_config(self) -> TrainConfig:
        return self.setup.train.replace(epochs=self.epochs)

    def sections(self) -> dict[str, Any]:
        s = self.setup
        return {"data": s.data, "model": s.model, "train": self.train_config(), "attack": s.attack, "final": s.final,
                "eval_precision": s.speedrun.eval_precision, **self.ticket_sections()}

    def ticket_sections(self) -> dict[str, Any]:
        """What the ticket adds to the identity (nothing without one): its kind, its search (the search stage's
        own hash: epochs, LR, attack, pruning and everything the search trains with) and the arm's settings."""
        arm = self.setup.ticket_arm()
        if arm is None:
            return {}
        bench = self.setup.bench_setup()
        return {"ticket": self.setup.speedrun.ticket, "search": arm.search(bench).hash(), **arm.extra_sections(bench)}

    @property
    def seed(self) -> int:
        return self.setup.train.seed

    def name(self) -> str:
        t = self.setup.speedrun.ticket
        return f"speedrun-{'' if t == 'none' else t + '-'}e{self.epochs}_{self.hash()}"

    def run(self, ctx: RunContext) -> SpeedrunPoint:
        s, run = self.setup, ctx.run_dir
        log = tee_log(self.log, run.file("run.log")) if ctx.is_primary else None
        if log:
            log(f"--- speedrun, {self.epochs} epochs: {run.path} ---")
        cfg = self.train_config()
        mask, search_time, ticket = None, 0.0, None
        if s.speedrun.ticket == "none":
            seed_everything(cfg.seed)
            model = build_model(s.model.model, s.model.width, self.data.spec)
        else:
            model, mask, search_time, ticket = self.build_ticket(ctx, log)
            seed_everything(cfg.seed)  # the training's randomness as without a ticket, whatever the search drew
        result = train(model, self.data, cfg, s.attack, ctx=ctx, mask=mask, augment=s.data.augment,
                       progress=self.progress, log=log,
                       describe=describe_run(s.model.model, s.model.width, s.data.to_dict(), eval_n=s.final.final_n,
                                             kind="speedrun" if ticket is None else f"speedrun {ticket['kind']} "
                                                                                    "ticket"))
        trained = len(result.history)  # every epoch trained was paid for, a rolled-back one too
        batch = min(cfg.batch_size, len(self.data.train))
        images = trained * iterations_per_epoch(len(self.data.train), cfg.batch_size) * batch
        final, t0 = None, time.perf_counter()
        if s.final.final_attacks:
            final = self.evaluate(model, ctx, log)
        final_time = time.perf_counter() - t0
        accuracy = {a["name"]: a["accuracy"] for a in final["attacks"]} if final else {}
        return SpeedrunPoint(
            epochs=self.epochs, epochs_trained=trained - sum(bool(r.get("rolled_back")) for r in result.history),
            train_time=search_time + result.train_time, search_time=search_time, ticket=ticket,
            epoch_eval_time=result.eval_time, final_eval_time=final_time,
            images_per_second=images / max(result.train_time, 1e-9), n=final["n"] if final else 0,
            clean=final["clean"] if final else None, accuracy=accuracy,
            worst_case=final["worst_case"] if final else None, guard_fired=guard_fired(result.history),
            stopped=result.stopped, settings=result.settings, train_config=cfg.to_dict(), history=result.history,
            final=final)

    def build_ticket(self, ctx: RunContext, log: Log) -> tuple[torch.nn.Module, Optional[dict], float, dict]:
        """Search (or reopen the search) and build the ticket with the bench's arm: (model at θ0, mask or None,
        search seconds counted, the ticket's record)."""
        from .models.shrink import count_macs
        from .pruning import find_ticket
        s, arm, bench = self.setup, self.setup.ticket_arm(), self.setup.bench_setup()
        root = ctx.run_dir.path.parent  # the search's stages sit beside this one, shared by every budget
        spec = arm.search(bench)
        ticket, where = find_ticket(spec, ctx.device, root, data=self.data, log=log, progress=self.progress, ctx=ctx)
        model, mask, search_time = arm.build(bench, self.data, ticket, ctx, root)
        image = tuple(self.data.train.x.shape[1:])
        dense = build_model(s.model.model, s.model.width, self.data.spec)
        n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        record = {"kind": s.speedrun.ticket, "search_dir": str(where.path), "search_epochs": spec.search.epochs,
                  "search_lr": spec.search.lr, "search_attack": spec.attack.attack,
                  "sparsity": ticket.sparsity()["sparsity"] if mask is not None else None,
                  "keep": s.speedrun.ticket_keep if s.speedrun.ticket == "structured" else None,
                  "macs": count_macs(model, image), "dense_macs": count_macs(dense, image),
                  "params": n_params(model), "dense_params": n_params(dense),
                  "architecture": getattr(model, "architecture", None)}
        if log:
            what = (f"sparsity {record['sparsity']:.3f}" if mask is not None else
                    f"{record['macs'] / record['dense_macs']:.3f} of the dense MACs")
            log(f"{s.speedrun.ticket} ticket ({what}) after {search_time:.1f} s of search (counted in the training "
                f"time); training it with the recipe")
        return model, mask, search_time, record

    def evaluate(self, model: torch.nn.Module, ctx: RunContext, log: Log) -> dict:
        """Every final attack on every clean-correct image of the first `final_n` test images (each attack's own
        accuracy; the worst case over them per image)."""
        f, s = self.setup.final, self.setup
        x, y = as_float(self.data.test, ctx.device, f.final_n)
        limits = {"autoattack": f.autoattack_n} if (f.autoattack_n and "autoattack" in f.final_attacks) else None
        return evaluate_robustness(model, x, y, f.final_attacks, eps=s.attack.eps, batch_size=f.eval_batch_size,
                                   seed=s.train.seed, independent=True,
                                   precision=resolve_precision(ctx.device, s.speedrun.eval_precision),
                                   limits=limits, log=log, progress=self.progress)


def guard_fired(history: list[dict]) -> bool:
    """Whether the catastrophic-overfitting guard rolled a run back."""
    return any(r.get("rolled_back") for r in history)


# ----------------------------------------------------------------------------------------------------
# The speedrun: every budget, then the report.

@dataclass
class SpeedrunResult(Result):
    epochs: int  # the main budget (--epochs)
    points: list[SpeedrunPoint]
    environment: dict
    runs: dict  # epochs -> the budget's run directory

    def main(self) -> SpeedrunPoint:
        return next(p for p in self.points if p.epochs == self.epochs)


@dataclass
class Speedrun(Stage):
    kind: ClassVar[str] = "speedrun"
    result: ClassVar[type] = SpeedrunResult
    setup: SpeedrunSetup
    root: Path = field(compare=False, default=Path("runs"))
    preset: Optional[str] = field(default=None, compare=False)
    progress: bool = field(default=False, compare=False)
    log: Log = field(default=None, compare=False)
    data: Optional[Dataset] = field(default=None, compare=False)

    def sections(self) -> dict[str, Any]:
        return {**self.setup.sections(), "speedrun": self.setup.speedrun.used(), "budgets": self.setup.budgets()}

    def record(self) -> dict:
        return {"preset": self.preset, **super().record()}

    @property
    def seed(self) -> int:
        return self.setup.train.seed

    def check(self, ctx) -> None:
        self.load()

    def load(self) -> Dataset:
        """The data, checked before anything is written (files, splits, the model on one sample batch)."""
        if self.data is None:
            s = self.setup
            check_data_files(s.data)
            self.data = load_dataset(s.data)
            if len(self.data.test) < s.final.final_n:
                source = s.data.test_data or s.data.data
                raise ConfigError(f"invalid final_n={s.final.final_n}: the test split of {source} holds "
                                  f"{len(self.data.test)} images")
            build_checked_model(s.model.model, s.model.width, self.data.spec, tuple(self.data.train.x.shape[1:]))
        return self.data

    def trainings(self) -> list[SpeedrunTraining]:
        return [SpeedrunTraining(self.setup, e, self.data, self.progress, self.log) for e in self.setup.budgets()]

    def run(self, ctx: RunContext) -> SpeedrunResult:
        self.load()
        points, runs = [], {}
        for stage in self.trainings():
            point = run_stage(stage, self.root, ctx)
            points.append(point)
            runs[str(stage.epochs)] = str(stage.path(self.root))
            if self.log:
                self.log(point_line(point))
        result = SpeedrunResult(epochs=self.setup.train.epochs, points=points, environment=environment(ctx.device),
                                runs=runs)
        write_report(result, ctx.run_dir.path, self.record())
        return result


def point_line(p: SpeedrunPoint) -> str:
    parts = [f"{p.epochs} epochs: {p.train_time:.1f} s of training ({p.images_per_second:,.0f} images/s)"]
    if p.ticket:
        parts[0] += f", {p.search_time:.1f} s of it the {p.ticket['kind']} ticket's search"
    if p.n:
        parts.append(f"clean {p.clean:.4f}")
        parts += [f"{a} {v:.4f}" for a, v in p.accuracy.items()]
        parts.append(f"worst case {p.worst_case:.4f} on {p.n} images")
    parts.append("the overfitting guard fired: " + p.stopped if p.guard_fired else "guard did not fire")
    return "speedrun " + "; ".join(parts)


# ----------------------------------------------------------------------------------------------------
# The report: headline, table, curve.

def device_name(env: dict) -> str:
    return f"{env.get('device_name') or env.get('device')} ({env.get('device')})"


def ticket_line(p: SpeedrunPoint) -> str:
    """What the ticket was and what its search cost (the point must have a ticket)."""
    t = p.ticket
    what = (f"a boosting ticket (sparsity {t['sparsity']:.3f}: a mask on the dense network, so each step costs what "
            "a dense one does)" if t["kind"] == "boosting" else
            f"a structured ticket (a shrunk dense network keeping {t['keep']:g} of each channel group: "
            f"{t['macs'] / t['dense_macs']:.3f} of the dense MACs, {t['params'] / t['dense_params']:.3f} of its "
            "weights)")
    return (f"Ticket: {what}, found by a {t['search_epochs']}-epoch search ({t['search_attack']}, peak LR "
            f"{t['search_lr']:g} at the reference batch) and reset to θ0; the search's **{p.search_time:.1f} s are "
            f"counted** in the training time ({p.recipe_time:.1f} s training the ticket). Search: `{t['search_dir']}`.")


def headline_lines(result: SpeedrunResult) -> list[str]:
    p, env = result.main(), result.environment
    s = p.settings
    searched = f"{p.search_time:.1f} s ticket search + {p.recipe_time:.1f} s training, " if p.ticket else ""
    lines = [f"Speedrun on {device_name(env)}, torch {env.get('torch')}: **{p.train_time:.1f} s of training** "
             f"({searched}{p.epochs} epochs, {p.images_per_second:,.0f} images/s; the data on the device, evaluation "
             f"excluded: {p.epoch_eval_time:.1f} s per-epoch evaluation and guard, {p.final_eval_time:.1f} s final "
             "attacks)."]
    if p.ticket:
        lines.append(ticket_line(p))
    if p.n:
        own = ", ".join(f"{a} {v:.4f}" for a, v in p.accuracy.items())
        lines.append(f"Robust accuracy on the first {p.n} test images: **{p.robust:.4f}** "
                     f"({'AutoAttack, standard' if 'autoattack' in p.accuracy else 'worst case over the attacks'}, "
                     f"ε = {p.final['eps'] * 255:.0f}/255); clean {p.clean:.4f}; each attack's own accuracy: {own}; "
                     f"per-image worst case {p.worst_case:.4f}.")
    else:
        lines.append("No final evaluation was asked for (final_attacks is empty).")
    lines.append("Catastrophic-overfitting guard: " + (f"**fired**: {p.stopped}" if p.guard_fired else
                                                       "did not fire" if p.train_config.get("guard") else "off") + ".")
    lines.append(f"Settings: precision {s.get('precision')}, channels_last {s.get('channels_last')}, CUDA graphs "
                 f"{s.get('cuda_graphs')}, LR peak {s.get('lr'):g} at batch {p.train_config['batch_size']}.")
    return lines


def markdown_table(points: list[SpeedrunPoint]) -> str:
    attacks = list(dict.fromkeys(a for p in points for a in p.accuracy))
    searched = any(p.ticket for p in points)
    head = ["epochs", "train s", *(["of it search s"] if searched else []), "images/s", "clean", *attacks,
            "worst case", "n", "guard fired", "per-epoch eval s", "final eval s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        acc = [_fmt(p.accuracy.get(a)) for a in attacks]
        search = [f"{p.search_time:.1f}"] if searched else []
        lines.append("| " + " | ".join([str(p.epochs), f"{p.train_time:.1f}", *search, f"{p.images_per_second:,.0f}",
                                        _fmt(p.clean), *acc, _fmt(p.worst_case), str(p.n),
                                        "yes" if p.guard_fired else "no", f"{p.epoch_eval_time:.1f}",
                                        f"{p.final_eval_time:.1f}"]) + " |")
    return "\n".join(lines)


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def curve_csv(points: list[SpeedrunPoint], device: Optional[str] = None) -> str:
    return csv_text([{**p.row(), **({"device": device} if device else {})} for p in points])


def plot_curve(series: dict[str, list[tuple[float, float, str]]], path: Path, title: str,
               ylabel: str = "robust accuracy") -> str:
    """Accuracy against training seconds: `series` maps a label to its (seconds, accuracy, point label) points."""
    from .plotting import pyplot, save_figure, style
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, pts) in enumerate(series.items()):
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        st = style(i)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=st["color"], marker=st["marker"])
        for x, y, text in pts:
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("training wall-clock (s; evaluation excluded)")
    ax.set_ylabel(ylabel)
    xs = [p[0] for pts in series.values() for p in pts if p[1] is not None]
    ys = [p[1] for pts in series.values() for p in pts if p[1] is not None]
    ax.set_xlim(0, 1.12 * max(xs, default=1.0))
    ax.set_ylim(0, min(1.0, max(ys, default=0.9) + 0.1))
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path, axes=[ax], legend="outside")


def curve_series(points: list[SpeedrunPoint]) -> dict[str, list[tuple[float, float, str]]]:
    names = list(dict.fromkeys(a for p in points for a in p.accuracy))
    series = {"clean": [(p.train_time, p.clean, f"{p.epochs} ep") for p in points]}
    for a in names:
        series[a] = [(p.train_time, p.accuracy.get(a), f"{p.epochs} ep") for p in points]
    return series


def write_report(result: SpeedrunResult, out: Path, record: Optional[dict] = None) -> None:
    """report.md, curve.csv and curve.png in `out`."""
    out = Path(out)
    points = sorted(result.points, key=lambda p: p.epochs)
    atomic_write_text(out / "curve.csv", curve_csv(points, device_name(result.environment)))
    figure = plot_curve(curve_series(points), out / "curve.png",
                        f"speedrun on {device_name(result.environment)}: accuracy vs training time")
    searched = (" With a ticket, every budget's training seconds include the ticket search (one search, shared by "
                "the budgets, counted in each), its training excluding its per-epoch evaluation as the recipe's "
                "does." if any(p.ticket for p in points) else "")
    lines = ["# Speedrun", "", *[f"- {line}" for line in headline_lines(result)], "",
             "## Epoch budgets" if len(points) > 1 else "## The run", "", markdown_table(points), "",
             "Each budget is a run of its own (its one-cycle LR over that budget). Training seconds exclude the data "
             "loading (the images are on the device before the clock starts), the per-epoch evaluation, the guard "
             "and the final attacks; every attack ran on every clean-correct image, so each column is that attack's "
             f"own accuracy.{searched}", "", f"![accuracy vs training time]({figure})", "",
             "Runs: " + ", ".join(f"{e} epochs `{d}`" for e, d in result.runs.items()), ""]
    env = result.environment
    lines.append(f"robustlth {env.get('robustlth')} at commit {env.get('git_commit')}, torch {env.get('torch')}, "
                 f"device {device_name(env)}.")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def run_speedrun(setup: SpeedrunSetup, device: torch.device, root: str | Path = "runs", preset: Optional[str] = None,
                 progress: bool = False, log: Log = None) -> tuple[SpeedrunResult, RunDir]:
    """Run (or resume, or reopen) the speedrun: every budget's training and final evaluation, then the report.
    Returns the result and the speedrun's directory (report.md, curve.csv, curve.png)."""
    check_data_files(setup.data)  # before the run's hash reads them: one line naming the data folders
    stage = Speedrun(setup, Path(root), preset, progress, log)
    result = run_stage(stage, root, RunContext(device))
    return result, stage_dir(stage, root)


__all__ = ["TICKETS", "SpeedrunConfig", "SpeedrunSetup", "SpeedrunTraining", "SpeedrunPoint", "Speedrun",
           "SpeedrunResult", "PRESETS", "RECIPE", "SECTIONS", "run_speedrun", "write_report", "headline_lines",
           "plot_curve", "guard_fired"]
