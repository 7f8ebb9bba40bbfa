"""Ticket search as stages: IMP rounds (train -> prune a fraction of what remains -> reset to θ0 or rewind to
θk) with the boosting-ticket recipe as defaults, or RST cycles (rst_search).

A search is a `TicketSearch` stage (`ticket_<hash>`) whose rounds are stages inside its directory
(`round_<r>`, each with its ticket.pt); round 1's dense training is a stage of its own (`search_<hash>`),
shared by every ticket that differs only in pruning. An interrupted search resumes at the round (and epoch)
where it stopped."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from ..config import AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig
from ..data import Dataset, load_dataset
from ..models import build_model, check_model_output
from ..progress import tee_log
from ..runs import RunDir
from ..stages import Result, Stage, is_done, run_stage, stage_dir
from ..training import RunContext, seed_everything, train
from ..training.checkpoint import describe_run, load_state_file, read_description
from .masks import dense_mask, full_mask, sparsity_report
from .rst import RSTConfig
from .rst_search import CycleResult, RstCycle, check_rst
from .search_checks import SearchStep, check_search
from .strategies import make_strategy
from .ticket import Ticket, TicketError, TicketInfo, load_ticket, save_ticket

Log = Optional[Callable[[str], None]]
RETRAIN_WARMUP_EPOCHS = 10  # the paper: warm-up from the search LR to the peak LR over 10 epochs


def default_search_lr(model: str) -> float:
    """Boosting-ticket search LR: VGG 0.01, ResNet/WideResNet 0.05, the small networks 0.01."""
    return 0.05 if model.startswith(("resnet", "preactresnet", "wrn")) else 0.01


def search_defaults(model: str) -> dict:
    """The paper's search recipe: small constant LR, no warm-up, x0.1 at 50 %/75 %, FGSM, 20 epochs."""
    return {"train": {"lr": default_search_lr(model), "epochs": 20, "schedule": "step", "warmup_epochs": 0,
                      "weight_decay": 1e-4, "momentum": 0.9},
            "attack": {"attack": "fgsm"}}


def retrain_schedule(cfg: TrainConfig, meta: TicketInfo, explicit: set[str] = frozenset()) -> TrainConfig:
    """The paper's ticket retraining: linear warm-up from the search LR to cfg.lr over 10 epochs, unless the
    user set the warm-up. Short budgets keep the paper's proportion (10 of 40 epochs: a quarter), so the
    ticket still trains at the peak LR before the first drop."""
    changes = {}
    if meta.retrain_warmup is False:  # e.g. an RST ticket: its fine-tuning has no warm-up (docs/rst.md)
        return cfg
    if "warmup_epochs" not in explicit:
        changes["warmup_epochs"] = min(RETRAIN_WARMUP_EPOCHS, cfg.epochs / 4)
    if "warmup_start_lr" not in explicit and meta.search_lr is not None:
        changes["warmup_start_lr"] = meta.search_lr
    return cfg.replace(**changes)


@dataclass(frozen=True)
class SearchSpec:
    """What a ticket search depends on: the config sections hashed into its directory's name."""
    data: DataConfig
    model: ModelConfig
    search: TrainConfig
    attack: AttackConfig
    prune: PruneConfig
    rst: Optional[RSTConfig] = None  # set: a dual (RST) ticket instead of IMP; `search` trains the transformation

    def sections(self) -> dict:
        out = {"data": self.data, "model": self.model, "search": self.search, "search_attack": self.attack,
               "prune": self.prune}
        return out if self.rst is None else {**out, "rst": self.rst}

    def hash(self) -> str:
        return TicketSearch(self).hash()

    def to_dict(self) -> dict:
        return {k: v.to_dict() for k, v in self.sections().items()}


# ----------------------------------------------------------------------------------------------------
# Results.

@dataclass
class TrainingResult(Result):
    """A finished training: its per-epoch history and wall-clock split (its weights: checkpoint.pt beside it)."""
    history: list
    train_time: float
    eval_time: float
    eval_split: str
    stopped: Optional[str] = None


@dataclass
class RoundResult(Result):
    """One IMP round: the sparsity it reached and how its training converged (see `convergence`)."""
    round: int
    sparsity: float
    remaining: int
    search_train_time: float
    search_time_cumulative: float
    layer_density: dict
    stopped: Optional[str] = None
    epoch1_clean: Optional[float] = None
    epoch1_pgd: Optional[float] = None
    epoch5_clean: Optional[float] = None
    epoch5_pgd: Optional[float] = None
    early_stop_epoch: Optional[int] = None
    final_clean: Optional[float] = None
    final_pgd: Optional[float] = None


@dataclass
class SearchResult(Result):
    """A finished ticket search (its ticket: ticket.pt beside it): IMP's rounds or RST's cycles."""
    search_time: float
    sparsity: float
    layer_density: dict
    method: str = "imp"
    rounds: list[RoundResult] = field(default_factory=list)
    cycles: list[CycleResult] = field(default_factory=list)
    schedule: Optional[dict] = None  # RST's η schedule


def convergence(history: list[dict]) -> dict:
    """Diagnostics of one training run: accuracy after epochs 1 and 5, early-stopping epoch, final."""
    out = {}
    for e in (1, 5):
        if len(history) >= e:
            out[f"epoch{e}_clean"] = history[e - 1]["eval_clean"]
            if "eval_pgd" in history[e - 1]:
                out[f"epoch{e}_pgd"] = history[e - 1]["eval_pgd"]
    if history:
        best = min(history, key=lambda r: r["eval_loss"])
        out["early_stop_epoch"] = best["epoch"]
        out["final_clean"] = history[-1]["eval_clean"]
        if "eval_pgd" in history[-1]:
            out["final_pgd"] = history[-1]["eval_pgd"]
    return out


def layer_density(report: dict) -> dict:
    return {name: layer["density"] for name, layer in report["layers"].items()}


def check_layers(report: dict, p: PruneConfig, r: int, log: Log = None) -> None:
    """A layer pruned to nothing blocks the signal: the ticket would train at chance, so it is an error
    (a warning when explicitly allowed)."""
    empty = [name for name, layer in report["layers"].items() if layer["remaining"] == 0]
    if not empty:
        return
    what = f"pruning ({p.strategy}, ratio {p.ratio}, round {r}) left no weights in {', '.join(empty)}"
    if not p.allow_empty_layers:
        raise TicketError(f"{what}: the ticket cannot learn through them; prune less, use global_normalized or "
                          "layerwise, or pass --allow-empty-layers")
    if log:
        log(f"warning: {what} (allowed by allow_empty_layers)")


# ----------------------------------------------------------------------------------------------------
# Stages.

@dataclass
class SearchTraining(Stage):
    """The dense search training (IMP's round 1). It depends on the data, model, search training, attack and
    rewind point only, so tickets that differ in pruning share it; checkpoint.pt holds the trained weights and
    rewind.pt the rewound ones."""
    kind = "search"
    result = TrainingResult
    spec: SearchSpec
    data: Optional[Dataset] = None
    progress: bool = False
    log: Log = None

    def sections(self) -> dict:
        s = self.spec
        return {"data": s.data, "model": s.model, "search": s.search, "search_attack": s.attack,
                "rewind": s.prune.rewind_iteration}

    @property
    def seed(self) -> int:
        return self.spec.search.seed

    def run(self, ctx: RunContext) -> TrainingResult:
        s, k = self.spec, self.spec.prune.rewind_iteration
        seed_everything(s.search.seed)  # θ0, the same as the ticket's
        model = build_model(s.model.model, s.model.width, self.data.spec)
        r = train(model, self.data, s.search, s.attack, ctx=ctx, rewind_iteration=k if k > 0 else None,
                  augment=s.data.augment, progress=self.progress, log=self.log,
                  describe=describe_run(s.model.model, s.model.width, s.data.to_dict(), kind="search training"))
        return TrainingResult(history=r.history, train_time=r.train_time, eval_time=r.eval_time,
                              eval_split=r.eval_split, stopped=r.stopped)

    def weights(self, root: str | Path) -> tuple[dict, Optional[dict]]:
        """(trained weights, rewound weights or None) of the finished training under `root`."""
        path = self.path(root)
        trained = read_description(path / "checkpoint.pt")[1]["model"]
        rewound = load_state_file(path / "rewind.pt", "rewind state") if self.spec.prune.rewind_iteration else None
        return trained, rewound


def search_training_hash(spec: SearchSpec) -> str:
    """The hash of `spec`'s dense search training: searches with the same one share it."""
    return SearchTraining(spec).hash()


def search_checkpoint(spec: SearchSpec, root: str | Path) -> Path:
    """The checkpoint of `spec`'s dense search training under `root`: the searched network."""
    return SearchTraining(spec).path(root) / "checkpoint.pt"


@dataclass
class ImpRound(SearchStep):
    """IMP round i: train the previous round's ticket (round 1: the shared dense search training), prune
    `ratio` of what remains, reset to θ0 or keep the rewound weights."""
    kind = "round"
    result = RoundResult
    shared: Path  # the root that holds the search trainings tickets share

    def run(self, ctx: RunContext) -> RoundResult:
        s, r = self.search, self.i
        spec, p, model = s.spec, s.spec.prune, s.model
        if r == 1:
            training = SearchTraining(spec, s.data, s.progress, self.log)
            trained = run_stage(training, self.shared, ctx)
            weights, rewound = training.weights(self.shared)
            mask, start_state, before = dense_mask(model), (s.theta0 if rewound is None else rewound), 0.0
            model.load_state_dict(weights)
            model.to(ctx.device)  # the pruning scores are computed where the training ran
        else:
            mask, start_state, before = self.start.mask, self.start.state_dict, self.start.meta.search_time
            model.load_state_dict(start_state)
            trained = train(model, s.data, spec.search, spec.attack, ctx=ctx, mask=full_mask(model, mask),
                            augment=spec.data.augment, progress=s.progress, log=self.log,
                            describe=describe_run(spec.model.model, spec.model.width, spec.data.to_dict(),
                                                  kind=f"IMP round {r}"))
        strategy = make_strategy(p.strategy, p.output_rate, p.dense_layers, p.prune_seed)
        t0 = time.perf_counter()
        mask = strategy.prune(model, mask, p.ratio, init_state=s.theta0)
        search_time = before + trained.train_time + (time.perf_counter() - t0)
        report = sparsity_report(mask)
        check_layers(report, p, r, self.log)
        self.save(ctx, Ticket(mask, start_state, s.info(r, search_time, strategy=p.strategy, rounds=p.rounds,
                                                        rewind_iteration=p.rewind_iteration)))
        if self.log:
            self.log(f"round {r}/{p.rounds}: sparsity {report['sparsity']:.4f}, search time {search_time:.1f}s")
        return RoundResult(round=r, sparsity=report["sparsity"], remaining=report["remaining"],
                           search_train_time=trained.train_time, search_time_cumulative=search_time,
                           layer_density=layer_density(report), stopped=trained.stopped,
                           **convergence(trained.history))


@dataclass
class TicketSearch(Stage):
    """A ticket search: `spec`'s IMP rounds or RST cycles, each a stage inside this one's directory; the
    final ticket is its ticket.pt. `data` (loaded from spec.data when None) is not part of its identity."""
    kind = "ticket"
    result = SearchResult
    spec: SearchSpec
    data: Optional[Dataset] = None
    progress: bool = False
    log: Log = None
    # Set by check(): the network every round trains in place, its initial weights, RST's dense layers.
    model: Optional[nn.Module] = field(default=None, init=False, repr=False)
    theta0: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    dense_layers: list[str] = field(default_factory=list, init=False)

    def sections(self) -> dict:
        return self.spec.sections()

    @property
    def seed(self) -> int:
        return self.spec.search.seed

    def check(self, ctx: RunContext) -> None:
        """Load the data and build the network at θ0; refuse what cannot work before a file is written."""
        s = self.spec
        self.data = self.data if self.data is not None else load_dataset(s.data)
        seed_everything(s.search.seed)
        self.model = build_model(s.model.model, s.model.width, self.data.spec)
        self.theta0 = {k: v.clone() for k, v in self.model.state_dict().items()}
        with torch.random.fork_rng(devices=[]):  # a sample batch through θ0: one logit per class of the data
            check_model_output(self.model, s.model.model, self.data.spec, tuple(self.data.train.x.shape[1:]))
        if s.rst is None:
            check_search(s, self.model, self.data)
        else:
            self.dense_layers = check_rst(s, self.model, self.data)

    def info(self, r: int, search_time: float, **how: Any) -> TicketInfo:
        """The metadata of the ticket of round (or cycle) r; `how` adds or overrides the method's fields."""
        s = self.spec
        return TicketInfo(**{"model": s.model.model, "width": s.model.width, "data_spec": self.data.spec.to_dict(),
                             "ratio": s.prune.ratio, "round": r, "seed": s.search.seed, "search_lr": s.search.lr,
                             "search_attack": s.attack.attack, "search_epochs": s.search.epochs,
                             "search_time": search_time, "search": s.to_dict(), "hash": self.hash(), **how})

    def run(self, ctx: RunContext) -> SearchResult:
        log = tee_log(self.log, ctx.run_dir.file("run.log")) if ctx.is_primary else None
        here, rst = ctx.run_dir.path, self.spec.rst
        ticket, steps = None, []
        for i in range(1, (rst.n_cycles() if rst else self.spec.prune.rounds) + 1):
            # Each step starts from the last one's ticket as saved: the same whether it ran now or before.
            step = RstCycle(self, i, ticket, log) if rst else ImpRound(self, i, ticket, log, here.parent)
            steps.append(run_stage(step, here, ctx))
            ticket = load_ticket(step.path(here) / "ticket.pt", trust_factory=self.spec.model.model)
        if ctx.is_primary:
            save_ticket(ctx.run_dir.file("ticket.pt"), ticket)
        report = ticket.sparsity()
        done = {"search_time": ticket.meta.search_time, "sparsity": report["sparsity"],
                "layer_density": layer_density(report)}
        if rst is None:
            return SearchResult(**done, rounds=steps)
        return SearchResult(**done, method=rst.method, cycles=steps, schedule=rst.schedule().describe())


def find_ticket(spec: SearchSpec, device: torch.device, root: str | Path = "runs", data: Optional[Dataset] = None,
                progress: bool = False, log: Log = None, ctx: Optional[RunContext] = None) -> tuple[Ticket, RunDir]:
    """Run (or resume) the search described by `spec`; returns the final ticket and its run directory.

    Everything checkable is checked before any directory is written; a round without its result.json is
    redone, resuming its training checkpoint. Under data parallelism (`ctx`) every process trains and prunes
    alike; only the primary one writes.
    """
    ctx = ctx if ctx is not None else RunContext(device)
    stage = TicketSearch(spec, data, progress, log if ctx.is_primary else None)
    done = is_done(stage, root)
    run_stage(stage, root, ctx)
    run = stage_dir(stage, root)
    ticket = load_ticket(run.file("ticket.pt"), trust_factory=spec.model.model)
    if done and stage.log:
        stage.log(f"ticket already on disk: {run.file('ticket.pt')}")
    return ticket, run
