"""`robustlth sparsity-sweep`: per seed, the dense network, an IMP ticket (reset to θ0) at each sparsity in
turn, a random ticket, and RST's transformation of that same random ticket, all fine-tuned alike. The sweep,
each fine-tuning and each RST search are stages (`robustlth.stages`): an interrupted sweep resumes where it
stopped, and sweeps that share a fine-tuning (another sparsity list, more seeds or methods) run it once."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig
from ..data import Dataset, as_float, load_dataset
from ..evaluate import predict
from ..models import build_model
from ..pruning import (TRANSFORM_DEFAULTS, RSTConfig, SearchResult, SearchSpec, Ticket, count, dense_mask,
                       find_ticket, load_ticket, prunable_weights, random_pick, save_ticket, ticket_model)
from ..pruning.rst import end_layers
from ..pruning.strategies import GlobalMagnitude
from ..pruning.ticket import TicketInfo
from ..runs import RunDir, atomic_torch_save, environment
from ..safety import safe_torch_load
from ..stages import DONE, Result, Stage, run_stage, stage_dir
from ..training import seed_everything, train
from ..training.context import RunContext
from .config import SweepConfig

Log = Optional[Callable[[str], None]]
RST_METHODS = ("rst", "rst-iter")


def layer_sparsity(model: torch.nn.Module, sparsity: float, dense_layers: list[str]) -> float:
    """The sparsity of the pruned layers that gives `sparsity` overall when `dense_layers` stay dense."""
    sizes = {n: w.numel() for n, w in prunable_weights(model).items()}
    pruned = sum(v for n, v in sizes.items() if n not in dense_layers)
    return min(sparsity * sum(sizes.values()) / pruned, 1 - 1 / pruned)


@dataclasses.dataclass
class SweepRow(Result):
    """One fine-tuned ticket: its method, seed and target sparsity, and what fine-tuning reached."""
    method: str
    seed: int
    target_sparsity: float
    sparsity: float
    test_acc: float
    val_acc: float
    epoch1_val_acc: float
    train_time: float
    transform_time: Optional[float] = None  # RST arms: the transformation's time
    squeezed_rms_ratio: Optional[float] = None  # RST arms: RMS of the squeezed weights after / before the last cycle

    def row(self) -> dict:
        """The row of sweep.csv (the RST columns only on RST rows)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}


@dataclasses.dataclass
class SweepResult(Result):
    rows: list[SweepRow]


class SweepExperiment(Stage):
    """Every seed, method and sparsity of one `robustlth sparsity-sweep` call; the fine-tunings are stages of
    their own."""
    kind = "sweep"
    result = SweepResult

    def __init__(self, cfg: SweepConfig, data_cfg: DataConfig, model_cfg: ModelConfig, train_cfg: TrainConfig,
                 root: str | Path, preset: Optional[str] = None, log: Log = None):
        self.cfg, self.data_cfg, self.model_cfg, self.train, self.root = cfg, data_cfg, model_cfg, train_cfg, Path(root)
        self.preset, self.log = preset, log
        self.data: Optional[Dataset] = None
        self._networks: dict[int, torch.nn.Module] = {}

    def sections(self) -> dict:
        return {"sweep": self.cfg, "data": self.data_cfg, "model": self.model_cfg, "train": self.train}

    def record(self) -> dict:
        return {"preset": self.preset, **super().record()}

    def check(self, ctx) -> None:
        self.data = load_dataset(self.data_cfg)  # bad data fails before anything is written

    def network(self, seed: int) -> torch.nn.Module:
        """A copy of the seed's network at θ0 (the same for every arm, and for RST's search), built once."""
        if seed not in self._networks:
            seed_everything(seed)
            self._networks[seed] = build_model(self.model_cfg.model, self.model_cfg.width, self.data.spec)
        return copy.deepcopy(self._networks[seed])

    def run(self, ctx) -> SweepResult:
        rows = []
        for seed in self.cfg.seeds:
            rows += self.seed_series(ctx, seed)
        return SweepResult(rows)

    def seed_series(self, ctx, seed: int) -> list[SweepRow]:
        methods, rows = set(self.cfg.methods), []

        def record(stage: SweepTraining) -> SweepRow:
            row = run_stage(stage, self.root, ctx)
            if row.method in methods:
                rows.append(row)
                if self.log:
                    self.log(f"seed {seed} {row.method} at {row.target_sparsity:.0%}: sparsity {row.sparsity:.4f}, "
                             f"test acc {row.test_acc:.4f}")
            return row

        parent = SweepTraining(self, seed, "dense", 0.0)
        if {"dense", "imp"} & methods:  # the dense network is IMP's first parent
            record(parent)
        if "imp" in methods:  # IMP through the sparsities in order: each ticket pruned from the last one trained
            for s in self.cfg.sparsities:
                parent = SweepTraining(self, seed, "imp", s, parent)
                record(parent)
        for s in self.cfg.sparsities:
            for method in ("random", *RST_METHODS):
                if method in methods:
                    record(SweepTraining(self, seed, method, s))
        return rows


class SweepTraining(Stage):
    """One fine-tuned ticket (trained.pt: its weights). Its identity: the data, network and fine-tuning (with
    the seed), and the ticket's: the method and target sparsity, plus for IMP the stage it prunes (its parent:
    the dense network or the previous sparsity's ticket), for random the dense-ends rule, for RST its search."""
    kind = "sweep-train"
    result = SweepRow

    def __init__(self, exp: SweepExperiment, seed: int, method: str, sparsity: float,
                 parent: Optional["SweepTraining"] = None):
        self.exp, self._seed, self.method, self.sparsity, self.parent = exp, seed, method, sparsity, parent

    @property
    def seed(self) -> int:
        return self._seed

    def sections(self) -> dict:
        ticket = {"method": self.method, "sparsity": self.sparsity}
        if self.method == "imp":
            ticket["parent"] = self.parent.hash()
        elif self.method == "random":
            ticket["ends_dense"] = self.exp.cfg.ends_dense
        elif self.method in RST_METHODS:
            ticket["search"] = self.search_spec(self.exp.network(self.seed)).hash()
        return {"data": self.exp.data_cfg, "model": self.exp.model_cfg, "train": self.exp.train.replace(seed=self.seed),
                "ticket": ticket}

    def name(self) -> str:
        where = "dense" if self.method == "dense" else f"{self.method}_{self.sparsity:g}"
        return f"{self.kind}/{self.exp.model_cfg.model}/seed_{self.seed}/{where}_{self.hash()}"

    def dense_layers(self, model: torch.nn.Module) -> list[str]:
        return list(end_layers(model)) if self.exp.cfg.ends_dense else []

    def search_spec(self, model: torch.nn.Module) -> SearchSpec:
        """RST's search for this arm: the transformation of the random pick the random arm trains as is."""
        cfg, t, dense_layers = self.exp.cfg, self.exp.train, self.dense_layers(model)
        ratio = layer_sparsity(model, self.sparsity, dense_layers)
        search = TrainConfig(**{**TRANSFORM_DEFAULTS, "lr": cfg.rst_lr, "eval_n": t.eval_n, "precision": t.precision,
                                "channels_last": t.channels_last, "cuda_graphs": t.cuda_graphs, "seed": self.seed})
        return SearchSpec(data=self.exp.data_cfg, model=self.exp.model_cfg, search=search, attack=AttackConfig(),
                          prune=PruneConfig(ratio=ratio, prune_seed=self.seed, dense_layers=dense_layers),
                          rst=RSTConfig(method=self.method, iterations=cfg.rst_iterations, eta_max=cfg.rst_eta_max,
                                        ends_dense=False))

    def ticket(self, ctx) -> tuple[Ticket, dict]:
        """The ticket this stage fine-tunes, and the row's extra fields (RST: the transformation's)."""
        exp, model = self.exp, self.exp.network(self.seed)
        theta0 = {k: v.clone() for k, v in model.state_dict().items()}
        info = TicketInfo(model=exp.model_cfg.model, width=exp.model_cfg.width, data_spec=exp.data.spec.to_dict())
        if self.method == "dense":
            return Ticket(dense_mask(model), theta0, info), {}
        if self.method == "imp":  # pruned from the parent's trained weights, among the parent's survivors
            parent = stage_dir(self.parent, exp.root)
            mask = load_ticket(parent.file("ticket.pt")).mask if self.parent.method == "imp" else dense_mask(model)
            model.load_state_dict(safe_torch_load(parent.file("trained.pt"), "trained weights"))
            pruned = GlobalMagnitude().prune(model, mask, 1 - (1 - self.sparsity) / (1 - self.parent.sparsity))
            ticket = Ticket(pruned, theta0, info.replace(strategy="global", sparsity=self.sparsity))
            save_ticket(ctx.run_dir.file("ticket.pt"), ticket)  # the next sparsity prunes among its survivors
            return ticket, {}
        dense_layers = self.dense_layers(model)
        if self.method == "random":  # the same pick as the RST arm's (same seed), without the transformation
            mask = random_pick(model, None, 0.0, layer_sparsity(model, self.sparsity, dense_layers), self.seed,
                               dense_layers)
            return Ticket(mask, theta0, info), {}
        ticket, search = find_ticket(self.search_spec(model), ctx.device, exp.root, data=exp.data, ctx=ctx)
        done = SearchResult.from_dict(search.read_json(DONE), str(search.file(DONE)))
        last = done.cycles[-1]
        return ticket, {"transform_time": done.search_time,
                        "squeezed_rms_ratio": last.squeezed_rms_after / max(last.squeezed_rms_before, 1e-12)}

    def run(self, ctx) -> SweepRow:
        exp, run = self.exp, ctx.run_dir
        ticket, extra = self.ticket(ctx)
        model = ticket_model(ticket)
        remaining, total = count(ticket.mask)
        result = train(model, exp.data, exp.train.replace(seed=self.seed), AttackConfig(), ctx=ctx,
                       mask=ticket.full_mask(model) if remaining < total else None, augment=exp.data_cfg.augment)
        x, y = as_float(exp.data.test, ctx.device)
        atomic_torch_save(run.file("trained.pt"), {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        run.file("checkpoint.pt").unlink(missing_ok=True)  # trained.pt holds the weights; keep the run small
        return SweepRow(method=self.method, seed=self.seed, target_sparsity=self.sparsity,
                        sparsity=1 - remaining / total, test_acc=float(predict(model, x, y)[0].float().mean()),
                        val_acc=result.final["eval_clean"], epoch1_val_acc=result.history[0]["eval_clean"],
                        train_time=result.train_time, **extra)


def run_sweep(cfg: SweepConfig, data_cfg: DataConfig, model_cfg: ModelConfig, train_cfg: TrainConfig,
              device: torch.device, root: str | Path = "runs", preset: Optional[str] = None,
              log: Log = None) -> tuple[dict, RunDir]:
    """Run (or resume) the sweep, then render its report; returns the results (config, rows, summary) and the
    sweep's directory."""
    exp = SweepExperiment(cfg, data_cfg, model_cfg, train_cfg, root, preset, log)
    result = run_stage(exp, root, RunContext(device))
    run = stage_dir(exp, root)
    from .report import write_report
    results = {"config": exp.record(), "environment": environment(device), "rows": [r.row() for r in result.rows]}
    results["summary"] = write_report(results, run.path)
    return results, run
