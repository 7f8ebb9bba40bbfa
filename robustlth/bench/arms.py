"""Bench arms. An arm is one class registered by name in `ARMS`: what it trains (model and mask), with which
recipe (its epochs, its attack), after which search. Adding an arm is one class here; the bench's --help, its
validation, the reports' pairings and the stage identity all read the registry.

Every arm runs as an `ArmStage`: its directory is named by the hash of exactly the sections it uses, so the
dense arm never depends on a search setting (changing --ratio or --search-epochs reuses it), and a ticket arm
depends on its search through the search's own hash.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import torch.nn as nn

from ..config import AttackConfig, TrainConfig
from ..data import Dataset, as_float
from ..evaluate import evaluate_robustness
from ..models import build_model
from ..models.shrink import count_macs
from ..pruning import (TRANSFORM_DEFAULTS, RSTConfig, SearchSpec, Ticket, TicketInfo, default_search_lr,
                       find_ticket, make_control, retrain_schedule, ticket_model)
from ..registry import Registry
from ..stages import Result, Stage
from ..training import seed_everything, train
from ..training.checkpoint import describe_run

# `s: BenchSetup` below is the bench's setup (bench.config); this module does not import it, since the
# setup validates arm names against ARMS.

Log = Optional[Callable[[str], None]]


class Arm:
    """The dense arm's recipe, which the others change: PGD AT of θ0 (the same θ0 as the search) for the
    dense budget."""
    paired_with: ClassVar[Optional[str]] = None  # reports give (that arm - this arm) when both ran

    def search(self, s: BenchSetup) -> Optional[SearchSpec]:
        """The ticket search this arm starts from (None: none)."""
        return None

    def epochs(self, s: BenchSetup) -> int:
        return s.bench.dense_epochs

    def attack(self, s: BenchSetup) -> AttackConfig:
        return s.attack

    def train_config(self, s: BenchSetup) -> TrainConfig:
        """The arm's recipe: the train section with the arm's epochs; natural retraining is judged by clean
        accuracy, so it skips the per-epoch PGD."""
        return s.train.replace(epochs=self.epochs(s), eval_steps=s.train.eval_steps if s.attack.attack != "none"
                               else 0)

    def extra_sections(self, s: BenchSetup) -> dict[str, Any]:
        """Further settings the arm depends on (hashed into its identity)."""
        return {}

    def build(self, s: BenchSetup, data: Dataset, ticket: Optional[Ticket], ctx, root) -> tuple[nn.Module, Any, float]:
        """(model at its starting weights, mask or None, search time counted for this arm)."""
        seed_everything(s.seed)  # the same θ0 as the ticket search
        return build_model(s.model.model, s.model.width, data.spec), None, 0.0


class FastArm(Arm):
    """Single-step (N-FGSM or FGSM-RS) AT; the trainer's catastrophic-overfitting guard is on for it."""

    def epochs(self, s: BenchSetup) -> int:
        return s.bench.fast_at_epochs or s.bench.ticket_epochs

    def attack(self, s: BenchSetup) -> AttackConfig:
        return AttackConfig(attack=s.bench.fast_at_attack, eps=s.attack.eps)


class TicketArm(Arm):
    """The boosting ticket: searched at the small LR, reset to θ0, retrained with the paper's warm-up from
    the search LR. The ticket arms below change only what makes them that arm."""

    def search_lr(self, s: BenchSetup) -> float:
        return s.bench.search_lr if s.bench.search_lr is not None else default_search_lr(s.model.model)

    def search(self, s: BenchSetup) -> SearchSpec:
        return SearchSpec(data=s.data, model=s.model,
                          search=s.train.replace(epochs=s.bench.search_epochs, lr=self.search_lr(s), eval_steps=0),
                          attack=AttackConfig(attack=s.bench.search_attack, eps=s.attack.eps,
                                              attack_steps=s.attack.attack_steps),
                          prune=s.prune)

    def epochs(self, s: BenchSetup) -> int:
        return s.bench.ticket_epochs

    def train_config(self, s: BenchSetup) -> TrainConfig:
        searched = TicketInfo(s.model.model, s.model.width, search_lr=self.search(s).search.lr)
        return retrain_schedule(super().train_config(s), searched)

    def build(self, s, data, ticket, ctx, root):
        model = ticket_model(ticket)
        return model, ticket.full_mask(model), ticket.meta.search_time


ARMS: Registry[type[Arm]] = Registry("arm")


@ARMS.register("dense")
class Dense(Arm):
    paired_with = "ticket"


ARMS.register("ticket", TicketArm)


@ARMS.register("reinit")
class Reinit(TicketArm):
    """The ticket's mask on a new random initialisation: does the ticket's θ0 matter?"""
    paired_with = "ticket"

    def build(self, s, data, ticket, ctx, root):
        return super().build(s, data, make_control(ticket, "reinit", seed=s.seed + 1), ctx, root)


@ARMS.register("random_prune")
class RandomPrune(TicketArm):
    """Global random pruning at the ticket's sparsity: needs no search, so it pays for none."""

    def build(self, s, data, ticket, ctx, root):
        model, mask, _ = super().build(s, data, make_control(ticket, "random_global", seed=s.seed + 1), ctx, root)
        return model, mask, 0.0


@ARMS.register("winning")
class Winning(TicketArm):
    """The ticket searched at the usual LR (the LTH's winning ticket)."""
    paired_with = "ticket"

    def search_lr(self, s: BenchSetup) -> float:
        return s.bench.winning_lr


@ARMS.register("fast_at")
class FastAT(FastArm):
    """Fast AT of the dense network with a one-cycle LR."""

    def train_config(self, s: BenchSetup) -> TrainConfig:
        return super().train_config(s).replace(schedule="onecycle")


@ARMS.register("ticket_fast")
class TicketFast(FastArm, TicketArm):
    """The ticket's recipe with single-step AT."""

    def epochs(self, s: BenchSetup) -> int:
        return FastArm.epochs(self, s)


class StructuredArm(TicketArm):
    """A shrunk dense model: channels ranked on the searched network the ticket came from, survivors at θ0."""

    def extra_sections(self, s: BenchSetup) -> dict[str, Any]:
        return {"structured": s.structured}

    def build(self, s, data, ticket, ctx, root):
        from ..pruning.finder import search_checkpoint
        from ..pruning.structured import shrunk_model, structured_ticket
        from ..safety import safe_torch_load
        searched = build_model(s.model.model, s.model.width, data.spec)
        searched.load_state_dict(safe_torch_load(search_checkpoint(self.search(s), root), "search checkpoint")["model"])
        t0 = time.perf_counter()
        st = structured_ticket(searched, ticket.state_dict, ticket.meta, s.structured.keep, s.structured.criterion,
                               s.structured.scope, s.structured.floor)
        model = shrunk_model(st)
        return model, None, ticket.meta.search_time + time.perf_counter() - t0


@ARMS.register("structured")
class Structured(StructuredArm):
    pass


@ARMS.register("structured_fast")
class StructuredFast(FastArm, StructuredArm):
    def epochs(self, s: BenchSetup) -> int:
        return FastArm.epochs(self, s)


@ARMS.register("rst")
class RST(TicketArm):
    """A random ticket at the bench's ratio transformed by RST (natural training, RST's recipe); fine-tuned
    without a warm-up."""

    def search(self, s: BenchSetup) -> SearchSpec:
        return SearchSpec(data=s.data, model=s.model, search=s.train.replace(**TRANSFORM_DEFAULTS),
                          attack=AttackConfig(), prune=s.prune.replace(prune_seed=s.seed),
                          rst=RSTConfig(iterations=s.bench.rst_iterations))

    def train_config(self, s: BenchSetup) -> TrainConfig:
        return Arm.train_config(self, s)


def pairs(arms) -> list[tuple[str, str]]:
    """The differences the reports give: (a, b) for a - b, from the arms' `paired_with`."""
    return [(ARMS[b].paired_with, b) for b in arms if ARMS[b].paired_with in arms]


# ----------------------------------------------------------------------------------------------------
# An arm as a stage.

@dataclass
class ArmResult(Result):
    arm: str
    search_time: float
    train_time: float
    total_time: float
    eval_time: float
    epochs: int
    stopped: Optional[str]
    eval_split: str
    sparsity: float
    architecture: Optional[dict]
    macs: int
    settings: dict
    train_config: dict
    curve: list
    final: Optional[dict]
    # Process CPU seconds (all threads) beside the wall clock, and the machine's 1-minute load average over the
    # arm's epochs ([lowest, highest]): on a shared machine wall-clock ratios move with the load. None: not
    # measured (runs of earlier versions; a search of several rounds or RST cycles records no CPU seconds).
    search_cpu_time: Optional[float] = None
    train_cpu_time: Optional[float] = None
    total_cpu_time: Optional[float] = None
    load_avg_range: Optional[list] = None


@dataclass
class ArmStage(Stage):
    kind: ClassVar[str] = "arm"
    result: ClassVar[type] = ArmResult
    arm: str
    setup: BenchSetup
    data: Optional[Dataset] = field(default=None, compare=False)  # loaded once by the bench, not an identity
    progress: bool = field(default=False, compare=False)
    log: Log = field(default=None, compare=False)

    @property
    def recipe(self) -> Arm:
        return ARMS[self.arm]()

    def sections(self) -> dict[str, Any]:
        s, a = self.setup, self.recipe
        search = a.search(s)
        return {"arm": self.arm, "data": s.data, "model": s.model, "train": a.train_config(s),
                "attack": a.attack(s), "final": s.final, "search": search.hash() if search else None,
                **a.extra_sections(s)}

    @property
    def seed(self) -> int:
        return self.setup.seed

    def name(self) -> str:
        return f"arm-{self.arm}_{self.hash()}"

    def run(self, ctx) -> ArmResult:
        s, a, log = self.setup, self.recipe, self.log if ctx.is_primary else None
        root = ctx.run_dir.path.parent
        if log:
            log(f"--- arm {self.arm} ---")
        search = a.search(s)
        ticket = (find_ticket(search, ctx.device, root, data=self.data, log=log, progress=self.progress, ctx=ctx)[0]
                  if search is not None else None)
        model, mask, search_time = a.build(s, self.data, ticket, ctx, root)
        cfg, attack = a.train_config(s), a.attack(s)
        describe = describe_run(s.model.model, s.model.width, s.data.to_dict(), eval_n=s.final.final_n,
                                kind=f"bench arm {self.arm}")
        result = train(model, self.data, cfg, attack, ctx=ctx, mask=mask, augment=s.data.augment,
                       progress=self.progress, log=log, describe=describe)
        search_cpu = _search_cpu_time(search, root)
        cpu, train_cpu = [], 0.0  # cumulative CPU seconds after each epoch (rolled-back epochs were paid for too)
        for r in result.history:
            train_cpu = train_cpu + r["cpu_s"] if (train_cpu is not None and r.get("cpu_s") is not None) else None
            cpu.append(train_cpu)
        curve = [{"epoch": r["epoch"], "wall_clock": search_time + r["train_time"], "clean": r["eval_clean"],
                  "pgd20": r.get("eval_pgd"), "cw20": r.get("eval_cw"), "robust": r.get("eval_robust"),
                  "loss": r["loss"], "eval_loss": r["eval_loss"],
                  "cpu_time": (search_cpu + c) if (search_cpu is not None and c is not None) else None,
                  "load_avg": r.get("load_avg"), "flags": r.get("eval_flags")}
                 for r, c in zip(result.history, cpu) if not r.get("rolled_back")]
        loads = [r["load_avg"] for r in result.history if r.get("load_avg") is not None]
        return ArmResult(search_cpu_time=search_cpu, train_cpu_time=train_cpu,
                         total_cpu_time=(search_cpu + train_cpu) if (search_cpu is not None and train_cpu is not None)
                         else None, load_avg_range=[min(loads), max(loads)] if loads else None,
                         arm=self.arm, search_time=search_time, train_time=result.train_time,
                         total_time=search_time + result.train_time, eval_time=result.eval_time, epochs=cfg.epochs,
                         stopped=result.stopped, eval_split=result.eval_split, sparsity=_sparsity(mask, model),
                         architecture=getattr(model, "architecture", None), macs=count_macs(model),
                         settings=result.settings, train_config=cfg.to_dict(), curve=curve,
                         final=self._final(model, result.settings["precision"], ctx, log))

    def _final(self, model: nn.Module, precision: str, ctx, log) -> Optional[dict]:
        f = self.setup.final
        if not f.final_attacks:
            return None
        x, y = as_float(self.data.test, ctx.device, f.final_n)
        limits = {"autoattack": f.autoattack_n} if (f.autoattack_n and "autoattack" in f.final_attacks) else None
        return evaluate_robustness(model, x, y, f.final_attacks, eps=self.setup.attack.eps,
                                   batch_size=f.eval_batch_size, seed=self.setup.seed, precision=precision,
                                   limits=limits, log=log, progress=self.progress and ctx.is_primary,
                                   ctx=ctx if ctx.distributed else None)


def _search_cpu_time(search: Optional[SearchSpec], root) -> Optional[float]:
    """CPU seconds of the arm's search: 0 without one; the shared one-shot search training's, from its recorded
    epochs; None where they are not recorded (older runs, several IMP rounds, RST)."""
    if search is None:
        return 0.0
    if search.rst is not None or search.prune.rounds != 1:
        return None
    from ..pruning.finder import SearchTraining
    from ..safety import read_json
    from ..stages import DONE
    path = SearchTraining(search).path(root) / DONE
    if not path.is_file():
        return None
    history = (read_json(path, "search training result") or {}).get("history") or []
    cpu = [r.get("cpu_s") for r in history]
    return round(sum(cpu), 3) if cpu and None not in cpu else None


def _sparsity(mask, model) -> float:
    if not mask:
        return 0.0
    from ..pruning import count, prunable_weights
    remaining, total = count({n: mask[n] for n in prunable_weights(model)})
    return 1 - remaining / total
