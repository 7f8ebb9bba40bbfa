"""`robustlth lth`: per network and seed, IMP with the LTH paper's layer-wise rates and reset to θ0; every
round trains the ticket and its controls and records the early-stopping iteration and the test accuracy
there. The experiment and each trained network are stages (`robustlth.stages`): an interrupted experiment
resumes at the training (and epoch) where it stopped, and experiments that share trainings (more seeds,
rounds or controls) train them once."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from ..attacks import PGD
from ..config import AttackConfig, ConfigError, DataConfig, TrainConfig
from ..data import Dataset, Split, as_float, balanced_indices, iterations_per_epoch, load_dataset
from ..evaluate import predict, robust_flags
from ..models import build_model
from ..pruning.masks import count, dense_mask, output_layer, prunable_weights
from ..pruning.strategies import Layerwise, RandomPruning
from ..pruning.ticket import Ticket, TicketInfo, load_ticket, save_ticket, ticket_data_spec, ticket_model
from ..runs import RunDir, environment
from ..stages import Result, Stage, run_stage, stage_dir
from ..training import train
from ..training.context import RunContext
from .config import CONTROLS, LTHConfig
from .evaluator import EarlyStopEvaluator

Log = Optional[Callable[[str], None]]
NEXT_TICKET = "next_ticket.pt"  # the ticket arm's pruned network: the next round's ticket


def initial_state(model_name: str, width: float, seed: int, init: str, spec) -> dict:
    """θ0 of `model_name` for `seed` (and the data `spec`): Glorot normal weights and zero biases (the paper),
    or PyTorch's init."""
    torch.manual_seed(seed)
    model = build_model(model_name, width, spec)
    if init == "glorot":
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / (fan_in + fan_out)) ** 0.5)
                    if m.bias is not None:
                        m.bias.zero_()
    return {k: v.clone() for k, v in model.state_dict().items()}


def layer_rates(model: nn.Module, cfg: LTHConfig, model_name: str) -> dict[str, float]:
    """Each prunable layer's rate: conv, hidden fully connected, or output."""
    rates = cfg.rates(model_name)
    modules = dict(model.named_modules())
    out = output_layer(model)
    return {n: rates["output"] if n == out else rates["conv" if isinstance(modules[n[:-len(".weight")]], nn.Conv2d)
                                                     else "fc"] for n in prunable_weights(model)}


def halves(data: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """Two disjoint, class-balanced halves of the training images (validation and test shared)."""
    first = balanced_indices(data.train.y, len(data.train) // 2, np.random.default_rng(seed))
    second = np.setdiff1d(np.arange(len(data.train)), first)
    take = lambda idx: Split(data.train.x[torch.from_numpy(idx)], data.train.y[torch.from_numpy(idx)])  # noqa: E731
    return dataclasses.replace(data, train=take(first)), dataclasses.replace(data, train=take(second))


@dataclasses.dataclass
class LthRow(Result):
    """One trained network: where it sits in the experiment, and its measurements at the early stop."""
    model: str
    seed: int
    round: int
    arm: str
    remaining_pct: float
    early_stop_iteration: int
    iterations: int
    val_loss: float
    val_acc: float
    test_acc: float
    test_acc_final: float  # after the last iteration
    train_time: float
    train_images: int
    robust: dict = dataclasses.field(default_factory=dict)  # pgd_acc_eps<ε·255> -> PGD accuracy, per --robust-eps

    def row(self) -> dict:
        """The flat row of lth.csv (one column per PGD budget)."""
        d = self.to_dict()
        robust = d.pop("robust")
        return {**d, **robust}


@dataclasses.dataclass
class LthResult(Result):
    rows: list[LthRow]


class LthExperiment(Stage):
    """Every network, seed, round and arm of one `robustlth lth` call; the trainings are stages of their own."""
    kind = "lth"
    result = LthResult

    def __init__(self, cfg: LTHConfig, data_cfg: DataConfig, train_cfg: TrainConfig, root: str | Path,
                 preset: Optional[str] = None, log: Log = None):
        self.cfg, self.data_cfg, self.train, self.root = cfg, data_cfg, train_cfg, Path(root)
        self.preset, self.log = preset, log
        self.data: Optional[Dataset] = None
        self._halves: dict[int, tuple[Dataset, Dataset]] = {}

    def sections(self) -> dict:
        return {"lth": self.cfg, "data": self.data_cfg, "train": self.train}

    def record(self) -> dict:
        return {"preset": self.preset, **super().record()}

    def check(self, ctx) -> None:
        self.data = load_dataset(self.data_cfg)  # bad data fails before anything is written
        if self.data.val is None:
            raise ConfigError("lth needs a validation split for the early-stopping iteration: set val_size "
                              "(e.g. --val-size 500)")
        if self.cfg.transfer and len(self.data.train) < 4 * self.train.batch_size:
            raise ConfigError(f"transfer halves of {len(self.data.train)} training images hold under two batches "
                              f"of {self.train.batch_size} each")

    def images(self, seed: int, half: Optional[int]) -> Dataset:
        """The training data of an arm: every image, or one of the seed's transfer halves."""
        if half is None:
            return self.data
        if seed not in self._halves:
            self._halves[seed] = halves(self.data, seed)
        return self._halves[seed][half]

    def run(self, ctx) -> LthResult:
        rows = []
        for model_name in self.cfg.models:
            for seed in self.cfg.seeds:
                rows += self.imp_series(ctx, model_name, seed)
        return LthResult(rows)

    def imp_series(self, ctx, model_name: str, seed: int) -> list[LthRow]:
        """IMP for one network and seed: per round the ticket (whose stage prunes it for the next round), then
        its controls and transfer arms, each trained from the round's ticket."""
        cfg, rows, parent = self.cfg, [], None
        for r in range(cfg.rounds + 1):
            arms = ["ticket"] + ([c for c in CONTROLS if c in cfg.controls] if r > 0 else [])
            if cfg.transfer:
                arms += ["transfer"] + (["transfer_reinit"] if r > 0 and "reinit" in cfg.controls else [])
            stages = [LthTraining(self, model_name, seed, r, arm, parent) for arm in arms]
            for stage in stages:
                row = run_stage(stage, self.root, ctx)
                rows.append(row)
                if self.log:
                    self.log(f"{model_name} seed {seed} round {r} {row.arm}: {row.remaining_pct:.1f} % of weights, "
                             f"early stop at iteration {row.early_stop_iteration}, test acc {row.test_acc:.4f}")
            parent = stages[0]
        return rows


class LthTraining(Stage):
    """One arm of one IMP round of one network and seed, trained with the early-stopping evaluator. Its
    identity: the data, training (with the seed), network and evaluation settings, the images it trains on,
    round, arm and the stage holding its ticket (the previous round's ticket arm). The ticket arm also prunes
    its trained network into next_ticket.pt, the next round's ticket, before its result commits: a round only
    starts from a finished round, and an interrupted pruning is redone with the training it prunes."""
    kind = "lth-train"
    result = LthRow

    def __init__(self, exp: LthExperiment, model: str, seed: int, round: int, arm: str,
                 parent: Optional["LthTraining"]):
        self.exp, self.model, self._seed, self.round, self.arm, self.parent = exp, model, seed, round, arm, parent

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def half(self) -> Optional[int]:
        """Transfer runs: IMP on half 0, the transfer arms on half 1; else every training image (None)."""
        return (1 if self.arm.startswith("transfer") else 0) if self.exp.cfg.transfer else None

    def sections(self) -> dict:
        cfg = self.exp.cfg
        robust = {"robust_eps": list(cfg.robust_eps), "robust_n": cfg.robust_n,
                  "robust_steps": cfg.robust_steps} if cfg.robust_eps else {}
        return {"data": self.exp.data_cfg, "train": self.exp.train.replace(seed=self.seed),
                "network": {"model": self.model, "width": cfg.width, "init": cfg.init},
                "evaluation": {"eval_every": cfg.eval_every, **robust}, "half": self.half,
                "position": {"round": self.round, "arm": self.arm},
                "ticket": self.parent.hash() if self.parent is not None else None,
                "prune": cfg.rates(self.model) if self.arm == "ticket" else None}

    def name(self) -> str:
        return f"{self.kind}/{self.model}/seed_{self.seed}/round_{self.round}/{self.arm}_{self.hash()}"

    def ticket(self) -> Ticket:
        """The network this arm trains: the round's ticket (dense θ0 at round 0), re-initialised (reinit), or
        a random mask of its per-layer sparsity (random)."""
        cfg, spec = self.exp.cfg, self.exp.data.spec
        dense = lambda: dense_mask(build_model(self.model, cfg.width, spec))  # noqa: E731
        if self.parent is None:
            theta0 = initial_state(self.model, cfg.width, self.seed, cfg.init, spec)
            return Ticket(dense(), theta0, TicketInfo(model=self.model, width=cfg.width, data_spec=spec.to_dict()))
        ticket = load_ticket(stage_dir(self.parent, self.exp.root).file(NEXT_TICKET))
        if self.arm in ("reinit", "transfer_reinit"):
            state = initial_state(self.model, cfg.width, 10_000 + self.seed * 1000 + self.round, cfg.init,
                                  ticket_data_spec(ticket))
            return Ticket(dict(ticket.mask), state, ticket.meta.replace(control="reinit"))
        if self.arm == "random":
            mask = RandomPruning(self.seed * 1000 + self.round, "layerwise").match(dense(), ticket.mask)
            return Ticket(mask, ticket.state_dict, ticket.meta)
        return ticket

    def run(self, ctx) -> LthRow:
        exp, cfg, run = self.exp, self.exp.cfg, ctx.run_dir
        ticket = self.ticket()
        data = exp.images(self.seed, self.half)
        model = ticket_model(ticket)
        remaining, total = count(ticket.mask)
        hook = EarlyStopEvaluator(model, *as_float(exp.data.val, ctx.device), cfg.eval_every)
        train_cfg = exp.train.replace(seed=self.seed)
        result = train(model, data, train_cfg, AttackConfig(), ctx=ctx,
                       mask=ticket.full_mask(model) if remaining < total else None, augment=exp.data_cfg.augment,
                       log=None, step_hooks=[hook])
        iterations = train_cfg.epochs * iterations_per_epoch(len(data.train), train_cfg.batch_size)
        hook.finish(iterations)
        if self.arm == "ticket":  # IMP: the trained network's survivors, pruned at the layer-wise rates, reset to θ0
            pruned = Layerwise(rates=layer_rates(model, cfg, self.model)).prune(model, ticket.mask, 0.0)
            save_ticket(run.file(NEXT_TICKET), Ticket(pruned, ticket.state_dict,
                                                     ticket.meta.replace(sparsity=None, round=self.round + 1)))
        x_test, y_test = as_float(exp.data.test, ctx.device)
        final_acc = float(predict(model, x_test, y_test)[0].float().mean())
        model.load_state_dict(hook.best_state)  # the early-stopped network
        best = hook.best()
        robust = {}
        for eps in cfg.robust_eps:
            x, y = as_float(exp.data.test, ctx.device, cfg.robust_n)
            gen = torch.Generator(device=ctx.device).manual_seed(self.seed)
            flags = robust_flags(model, PGD(eps, steps=cfg.robust_steps), x, y, generator=gen)
            robust[f"pgd_acc_eps{eps * 255:g}"] = float(flags.float().mean())
        run.write_json("curve.json", hook.records)
        run.file("checkpoint.pt").unlink(missing_ok=True)  # the result holds what is needed; keep the run small
        return LthRow(model=self.model, seed=self.seed, round=self.round, arm=self.arm,
                      remaining_pct=100 * remaining / total, early_stop_iteration=hook.best_iteration,
                      iterations=iterations, val_loss=best["val_loss"], val_acc=best["val_acc"],
                      test_acc=float(predict(model, x_test, y_test)[0].float().mean()), test_acc_final=final_acc,
                      train_time=result.train_time, train_images=len(data.train), robust=robust)


def run_lth(cfg: LTHConfig, data_cfg: DataConfig, train_cfg: TrainConfig, device: torch.device,
            root: str | Path = "runs", preset: Optional[str] = None, log: Log = None) -> tuple[dict, RunDir]:
    """Run (or resume) the experiment, then render its report; returns the results (config, rows, summary) and
    the experiment's directory."""
    exp = LthExperiment(cfg, data_cfg, train_cfg, root, preset, log)
    result = run_stage(exp, root, RunContext(device))
    run = stage_dir(exp, root)
    from .report import write_report
    results = {"config": exp.record(), "environment": environment(device), "rows": [r.row() for r in result.rows]}
    results["summary"] = write_report(results, run.path)
    return results, run
