"""IMP on a fully connected network, per layer, with the output layer dense, rewinding and the locality
paper's stopping rule. Each trained mask (an IMP round, or a control mask derived from one) is a stage
(`robustlth.stages`): an interrupted run resumes at the round (and epoch) where it stopped, and IMP runs that
differ only in when they stop (max_rounds) share their rounds."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch.nn as nn

from ..config import AttackConfig, DataConfig, ModelConfig, TrainConfig
from ..data import Dataset, as_float
from ..evaluate import predict
from ..models import build_model
from ..pruning.masks import Mask, dense_mask, full_mask, output_layer, prunable_weights, sparsity_report
from ..pruning.strategies import Layerwise, RandomPruning
from ..pruning.ticket import Ticket, TicketInfo, load_ticket, save_ticket
from ..runs import atomic_torch_save
from ..stages import Result, Stage, run_stage, stage_dir
from ..training import seed_everything, train
from ..training.checkpoint import load_state_file
from .analysis import locality_scores
from .config import LocalityConfig

Log = Optional[Callable[[str], None]]
DERIVED = ("oneshot", "random")  # the control masks made at the analysed round's sparsity


def first_layer(model: nn.Module) -> str:
    return next(iter(prunable_weights(model)))


def connected_fractions(model: nn.Module, mask: Mask) -> dict[str, float]:
    """For each pruned layer (all but the output layer): the fraction of its units with at least one surviving
    input and at least one surviving output connection."""
    names = list(prunable_weights(model))
    out = {}
    for name, nxt in zip(names[:-1], names[1:]):
        fed = mask[name].flatten(1).any(1)
        feeds = mask[nxt].any(0)
        if feeds.numel() != fed.numel():
            raise ValueError(f"{name} has {fed.numel()} units but {nxt} has {feeds.numel()} inputs: not a chain of "
                             "linear layers")
        out[name] = float((fed & feeds).float().mean())
    return out


def stop_reason(model: nn.Module, mask: Mask, threshold: float) -> Optional[str]:
    """Why IMP stops at this mask (a pruned layer has at most `threshold` of its units connected), or None."""
    for name, frac in connected_fractions(model, mask).items():
        if frac <= threshold:
            return f"{name} has {frac:.1%} of its units connected (<= {threshold:.0%})"
    return None


@dataclasses.dataclass
class RoundSummary(Result):
    """One trained mask: its densities, accuracies (validation after the last epoch, test), connectivity and
    the locality of its first layer."""
    round: Optional[int]  # None: a derived control mask (one-shot, random)
    density: float  # of the hidden layers
    first_layer_density: float
    val_acc: float
    val_loss: float
    train_acc: float
    test_acc: float
    train_time: float
    eval_split: str
    connected: list  # per pruned layer, the fraction of its units connected
    locality_sc: float
    locality_dc: float
    mean_dist_sc: float
    mean_dist_dc: float
    pairs_sc: int
    pairs_dc: int
    stopped: Optional[str] = None  # why IMP stops after this round: its stopping rule, or max_rounds (run_imp)

    def row(self) -> dict:
        """The flat form of the report and results.json (connected_1, connected_2, ...)."""
        out = {}
        for k, v in self.to_dict().items():
            out.update({f"connected_{i + 1}": f for i, f in enumerate(v)} if k == "connected" else {k: v})
        return out


@dataclasses.dataclass
class ImpRun:
    """One IMP run: what its rounds depend on, the images they train on, and where their stages live."""
    data_cfg: DataConfig
    model: ModelConfig
    train: TrainConfig
    loc: LocalityConfig
    control: dict  # {}: the original data; else the data control ({"data_fraction": ...}, {"superclasses": ...})
    label: str  # its folder: imp, data_0.3, superclasses_2
    data: Dataset
    root: Path
    log: Log = None  # progress lines (not part of the identity)

    def sections(self) -> dict:
        """Not max_rounds: a round is the same whenever IMP stops."""
        imp = {k: getattr(self.loc, k) for k in ("ratio", "stop_units", "rewind_iteration")}
        return {"data": self.data_cfg, "model": self.model, "train": self.train, "imp": imp,
                "control": self.control}


class LocalityTraining(Stage):
    """One trained mask of an IMP run: round r (its mask pruned from round r − 1's trained weights; round 0
    dense), or a control derived at round r's sparsity: one-shot pruning of the trained dense network, or a
    random mask with round r's per-layer counts. Every mask but round 0's starts from the rewind weights θk.
    Its directory holds ticket.pt (the mask and starting weights), trained.pt and, in round 0, rewind.pt."""
    kind = "locality-train"
    result = RoundSummary

    def __init__(self, imp: ImpRun, arm: str, round: int, parent: Optional["LocalityTraining"]):
        """`parent`: the previous round (None for round 0), or for a derived mask the round it matches."""
        self.imp, self.arm, self.round, self.parent = imp, arm, round, parent

    @property
    def seed(self) -> int:
        return self.imp.train.seed

    def sections(self) -> dict:
        return {**self.imp.sections(), "mask": {"arm": self.arm, "round": self.round},
                "parent": self.parent.hash() if self.parent is not None else None}

    def name(self) -> str:
        return f"{self.kind}/{self.imp.label}/{self.arm}_{self.round}_{self.hash()}"

    def dir_of(self, stage: "LocalityTraining"):
        return stage_dir(stage, self.imp.root)

    def round0(self) -> "LocalityTraining":
        return self if self.parent is None else self.parent.round0()

    def mask(self, model: nn.Module) -> Optional[Mask]:
        """This stage's mask (None: dense); `model` ends up holding whatever weights the pruning needed."""
        imp, loc = self.imp, self.imp.loc
        if self.arm == "round":
            if self.parent is None:
                return None
            parent = self.dir_of(self.parent)
            model.load_state_dict(load_state_file(parent.file("trained.pt"), "trained state"))
            return Layerwise(output_rate=0.0).prune(model, load_ticket(parent.file("ticket.pt")).mask, loc.ratio)
        if self.arm == "oneshot":
            model.load_state_dict(load_state_file(self.dir_of(self.round0()).file("trained.pt"), "trained state"))
            return Layerwise(output_rate=0.0).prune(model, dense_mask(model), 1 - (1 - loc.ratio) ** self.round)
        matched = load_ticket(self.dir_of(self.parent).file("ticket.pt")).mask
        return RandomPruning(imp.train.seed, "layerwise").match(dense_mask(model), matched)

    def run(self, ctx) -> RoundSummary:
        imp, loc = self.imp, self.imp.loc
        seed_everything(imp.train.seed)
        model = build_model(imp.model.model, imp.model.width, imp.data.spec)
        start = {k: v.clone() for k, v in model.state_dict().items()}  # θ0
        mask = self.mask(model)
        if mask is not None:
            start = load_state_file(self.dir_of(self.round0()).file("rewind.pt"), "rewind state")
        info = TicketInfo(model=imp.model.model, width=imp.model.width, data_spec=imp.data.spec.to_dict(),
                          **({"round": self.round} if self.arm == "round" else {"control": self.arm}))
        save_ticket(ctx.run_dir.file("ticket.pt"), Ticket(mask if mask is not None else dense_mask(model), start, info))
        summary = train_mask(model, start, mask, imp.data, imp.train, ctx, loc.radius,
                             loc.rewind_iteration if self.arm == "round" and self.round == 0 else None,
                             imp.data_cfg.augment, imp.log)
        stopped = None
        if self.arm == "round":  # the stopping rule, on the mask the next round would train
            mask = mask if mask is not None else dense_mask(model)
            stopped = stop_reason(model, Layerwise(output_rate=0.0).prune(model, mask, loc.ratio), loc.stop_units)
        return RoundSummary(round=self.round if self.arm == "round" else None, **summary, stopped=stopped)


def train_mask(model: nn.Module, start: dict, mask: Optional[Mask], data: Dataset, cfg: TrainConfig, ctx,
               radius: int, rewind_iteration: Optional[int] = None, augment: bool = False, log: Log = None) -> dict:
    """Train `mask` (None: dense) from `start` in place, keep the weights in the run directory's trained.pt and
    return the RoundSummary's measurements."""
    model.load_state_dict(start)
    result = train(model, data, cfg, AttackConfig(), ctx=ctx,
                   mask=full_mask(model, mask) if mask is not None else None, rewind_iteration=rewind_iteration,
                   augment=augment, log=log)
    run = ctx.run_dir
    atomic_torch_save(run.file("trained.pt"), {k: v.detach().cpu() for k, v in model.state_dict().items()})
    run.file("checkpoint.pt").unlink(missing_ok=True)  # trained.pt holds the weights; the optimiser is not needed
    mask = mask if mask is not None else dense_mask(model)
    hidden = {n: m for n, m in mask.items() if n != output_layer(model)}
    x, y = as_float(data.test, ctx.device)
    last = result.final
    return {"density": sparsity_report(hidden)["density"],
            "first_layer_density": sparsity_report(mask)["layers"][first_layer(model)]["density"],
            "val_acc": last["eval_clean"], "val_loss": last["eval_loss"], "train_acc": last["train_acc"],
            "test_acc": float(predict(model, x, y)[0].float().mean()), "train_time": result.train_time,
            "eval_split": result.eval_split, "connected": list(connected_fractions(model, mask).values()),
            **locality_scores(mask[first_layer(model)], radius)}


def run_imp(imp: ImpRun, ctx) -> list[tuple[LocalityTraining, RoundSummary]]:
    """Round 0 trains the dense network (and keeps θk); round r > 0 trains round r − 1's trained network
    pruned by `ratio` of each hidden layer's remaining weights, from θk. IMP stops after the round whose
    pruned mask meets the stopping rule, or after `max_rounds` pruned rounds. Returns each trained round's
    stage and summary; the last summary says why IMP stopped."""
    rounds, parent, max_rounds = [], None, imp.loc.max_rounds
    if imp.log:
        imp.log(f"IMP run {imp.label} ({imp.control or 'original data'})")
    for r in range(max_rounds + 1):
        stage = LocalityTraining(imp, "round", r, parent)
        summary = run_stage(stage, imp.root, ctx)
        if r == max_rounds and summary.stopped is None:
            summary = dataclasses.replace(summary, stopped=f"max_rounds={max_rounds} reached")
        rounds.append((stage, summary))
        if imp.log:
            imp.log(f"{imp.label} round {r}: density {summary.density:.4f}, val acc {summary.val_acc:.4f}, locality "
                f"S_sc {summary.locality_sc:.3f}" + (f"; stop: {summary.stopped}" if summary.stopped else ""))
        if summary.stopped:
            break
        parent = stage
    return rounds


def best_round(rounds: list[RoundSummary]) -> RoundSummary:
    """The round with the best validation accuracy (ties: the sparser one)."""
    return max(rounds, key=lambda s: (s.val_acc, s.round))
