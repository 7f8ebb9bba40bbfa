"""Ticket search: IMP rounds (train -> prune a fraction of what remains -> reset to θ0 or rewind to θk), with
the boosting-ticket recipe as defaults. Each round is a stage on disk; an interrupted search resumes at the
round (and epoch) where it stopped."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig, config_hash
from ..data import Dataset, load_dataset
from ..models import build_model
from ..progress import tee_log
from ..runs import RunDir
from ..training import RunContext, seed_everything, train
from ..training.checkpoint import describe_run
from .rst import RSTConfig
from .masks import dense_mask, full_mask, sparsity_report
from .search_checks import check_search
from .strategies import make_strategy
from .ticket import Ticket, TicketError, commit_stage, load_ticket, save_ticket

RETRAIN_WARMUP_EPOCHS = 10  # the paper: warm-up from the search LR to the peak LR over 10 epochs


def default_search_lr(model: str) -> float:
    """Boosting-ticket search LR: VGG 0.01, ResNet/WideResNet 0.05, the small networks 0.01."""
    return 0.05 if model.startswith(("resnet", "preactresnet", "wrn")) else 0.01


def search_defaults(model: str) -> dict:
    """The paper's search recipe: small constant LR, no warm-up, x0.1 at 50 %/75 %, FGSM, 20 epochs."""
    return {"train": {"lr": default_search_lr(model), "epochs": 20, "schedule": "step", "warmup_epochs": 0,
                      "weight_decay": 1e-4, "momentum": 0.9},
            "attack": {"attack": "fgsm"}}


def retrain_schedule(cfg: TrainConfig, meta: dict, explicit: set[str] = frozenset()) -> TrainConfig:
    """The paper's ticket retraining: linear warm-up from the search LR to cfg.lr over 10 epochs, unless the
    user set the warm-up. Short budgets keep the paper's proportion (10 of 40 epochs: a quarter), so the
    ticket still trains at the peak LR before the first drop."""
    changes = {}
    if meta.get("retrain_warmup") is False:  # e.g. an RST ticket: its fine-tuning has no warm-up (SPEC 3)
        return cfg
    if "warmup_epochs" not in explicit:
        changes["warmup_epochs"] = min(RETRAIN_WARMUP_EPOCHS, cfg.epochs / 4)
    if "warmup_start_lr" not in explicit and meta.get("search_lr") is not None:
        changes["warmup_start_lr"] = meta["search_lr"]
    return cfg.replace(**changes)


@dataclass(frozen=True)
class SearchSpec:
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
        return config_hash("ticket", self.sections())

    def training_hash(self) -> str:
        """The dense search training depends on these only, so tickets that differ in pruning share it."""
        return config_hash("search", {"data": self.data, "model": self.model, "search": self.search,
                                      "search_attack": self.attack, "rewind": self.prune.rewind_iteration})

    def to_dict(self) -> dict:
        return {k: v.to_dict() for k, v in self.sections().items()}


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


def check_layers(report: dict, p: PruneConfig, r: int, log: Optional[Callable[[str], None]] = None) -> None:
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


def find_ticket(spec: SearchSpec, device: torch.device, root: str | Path = "runs", data: Optional[Dataset] = None,
                progress: bool = False, log: Optional[Callable[[str], None]] = None,
                ctx: Optional[RunContext] = None) -> tuple[Ticket, RunDir]:
    """Run (or resume) the search described by `spec`; returns the final ticket and its run directory.

    Everything checkable is checked before any directory is written. A round is done when its summary.json
    (written after its ticket.pt) exists; a round without one is redone, resuming its training checkpoint.
    Under data parallelism (`ctx`) every process trains and prunes alike; only the primary one writes.
    """
    ctx = ctx if ctx is not None else RunContext(device)
    log = log if ctx.is_primary else None
    if spec.rst is not None:
        from .rst_search import find_rst_ticket
        return find_rst_ticket(spec, device, root, data, progress, log, ctx)
    final = Path(root) / f"ticket_{spec.hash()}" / "ticket.pt"
    if final.exists():  # written last: the whole search is on disk
        ticket = load_ticket(final)
        if log:
            log(f"ticket already on disk: {final}")
        return ticket, RunDir(final.parent)
    data = data if data is not None else load_dataset(spec.data)
    p = spec.prune
    strategy = make_strategy(p.strategy, p.output_rate, p.dense_layers, p.prune_seed)
    seed_everything(spec.search.seed)
    model = build_model(spec.model.model, spec.model.width, data.spec)
    check_search(spec, model, data)
    run = ctx.open_run(root, "ticket", spec.hash(), spec.to_dict(), spec.search.seed)
    if ctx.is_primary:
        log = tee_log(log, run.file("run.log"))
    with ctx.hold(run):
        return _search(spec, model, data, strategy, run, ctx, root, progress, log), run


def _search(spec: SearchSpec, model, data: Dataset, strategy, run: RunDir, ctx: RunContext, root, progress,
            log) -> Ticket:
    p = spec.prune
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    mask = dense_mask(model)
    start_state, search_time, rounds = theta0, 0.0, []
    rewind_k = p.rewind_iteration
    for r in range(1, p.rounds + 1):
        rdir = RunDir(run.path / f"round_{r}")
        if rdir.file("summary.json").exists():  # a finished stage
            done = load_ticket(rdir.file("ticket.pt"))
            mask, start_state, search_time = done.mask, done.state_dict, done.meta["search_time"]
            rounds.append(rdir.read_json("summary.json"))
            continue
        model.load_state_dict(start_state)
        # Round 1 trains the dense network: shared by every ticket with the same search training, so it is
        # locked against a second search that needs it at the same time. Later rounds live in the locked run.
        train_dir = ctx.open_run(root, "search", spec.training_hash(), spec.to_dict(),
                                 spec.search.seed) if r == 1 else rdir
        with ctx.hold(train_dir) if r == 1 else contextlib.nullcontext():
            result = train(model, data, spec.search, spec.attack, ctx=ctx.with_run_dir(train_dir),
                           mask=full_mask(model, mask) if r > 1 else None,
                           rewind_iteration=rewind_k if (r == 1 and rewind_k > 0) else None,
                           augment=spec.data.augment, progress=progress, log=log,
                           describe=describe_run(spec.model.model, spec.model.width, spec.data.to_dict(),
                                                 kind="search training" if r == 1 else f"IMP round {r}"))
        t0 = time.perf_counter()
        mask = strategy.prune(model, mask, p.ratio, init_state=theta0)
        search_time += result.train_time + (time.perf_counter() - t0)
        report = sparsity_report(mask)
        check_layers(report, p, r, log)
        if rewind_k > 0:
            start_state = result.rewind_state if r == 1 else load_ticket(run.path / "round_1" / "ticket.pt").state_dict
        else:
            start_state = theta0
        summary = {"round": r, "sparsity": report["sparsity"], "remaining": report["remaining"],
                   "search_train_time": result.train_time, "search_time_cumulative": search_time,
                   "stopped": result.stopped, **convergence(result.history), "layer_density": layer_density(report)}
        meta = {"model": spec.model.model, "width": spec.model.width, "strategy": p.strategy, "ratio": p.ratio,
                "round": r, "rounds": p.rounds, "rewind_iteration": rewind_k, "seed": spec.search.seed,
                "search_lr": spec.search.lr, "search_attack": spec.attack.attack, "search_epochs": spec.search.epochs,
                "search_time": search_time, "search": spec.to_dict(), "hash": spec.hash(),
                "data_spec": data.spec.to_dict()}
        commit_stage(ctx, rdir, Ticket(mask, start_state, meta), summary)
        rounds.append(summary)
        if log:
            log(f"round {r}/{p.rounds}: sparsity {report['sparsity']:.4f}, search time {search_time:.1f}s")
    ticket = load_ticket(run.path / f"round_{p.rounds}" / "ticket.pt")
    if ctx.is_primary:
        run.write_json("summary.json", {"rounds": rounds, "search_time": search_time,
                                        "sparsity": ticket.sparsity()["sparsity"],
                                        "layer_density": layer_density(ticket.sparsity())})
        save_ticket(run.file("ticket.pt"), ticket)  # commits the search
    ctx.barrier()
    return ticket
