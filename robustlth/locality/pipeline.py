"""`robustlth locality`: IMP on the FCN, the controls, the analysis of the round with the best validation
accuracy, and the report. The analysis and every training are stages (`robustlth.stages`), so a second call
only re-renders the report."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import ConfigError, DataConfig, ModelConfig, TrainConfig
from ..data import Dataset, iterations_per_epoch, load_dataset
from ..pruning.ticket import load_ticket, ticket_model
from ..runs import RunDir, environment
from ..stages import Result, Stage, run_stage, stage_dir
from ..training.checkpoint import load_state_file
from ..training.context import RunContext
from .config import LocalityConfig
from .controls import merge_labels, train_fraction
from .imp import DERIVED, ImpRun, LocalityTraining, RoundSummary, best_round, first_layer, run_imp
from .removal import removal_accuracy

Log = Optional[Callable[[str], None]]


@dataclasses.dataclass
class LocalityArm(Result):
    """An analysed mask: its training (directory relative to the runs root), summary and unit-removal test."""
    stage: str
    summary: RoundSummary
    removal: Optional[dict] = None  # none for the dense network, whose units all tie in in-degree


@dataclasses.dataclass
class ImpControl(Result):
    """IMP again on controlled data (fewer images, merged labels)."""
    rounds: list[RoundSummary]
    best_round: int


@dataclasses.dataclass
class LocalityResult(Result):
    rounds: list[RoundSummary]
    best_round: int
    n_train: int
    n_val: int
    n_test: int
    arms: dict[str, LocalityArm]  # imp (the best round), dense, and the derived controls
    controls: dict[str, ImpControl]
    train_time_s: float  # every trained mask's, together

    def flat(self) -> dict:
        """The form of results.json and the report: summaries as flat rows."""
        return {"rounds": [s.row() for s in self.rounds], "best_round": self.best_round, "n_train": self.n_train,
                "n_val": self.n_val, "n_test": self.n_test,
                "arms": {k: {"stage": a.stage, "summary": a.summary.row(), "removal": a.removal}
                         for k, a in self.arms.items()},
                "controls": {k: {"rounds": [s.row() for s in c.rounds], "best_round": c.best_round}
                             for k, c in self.controls.items()},
                "train_time_s": self.train_time_s}


def check_rewind(loc: LocalityConfig, cfg: TrainConfig, n_train: int) -> None:
    """Fail before any training when a round has fewer steps than the rewind point (the data control gets as
    many steps as the main run)."""
    steps = cfg.epochs * iterations_per_epoch(n_train, cfg.batch_size)
    if loc.rewind_iteration > steps:
        raise ConfigError(f"invalid rewind_iteration={loc.rewind_iteration}: expected at most the {steps} steps of a "
                          f"round ({cfg.epochs} epochs of {n_train} images in batches of {cfg.batch_size})")


def same_steps(cfg: TrainConfig, n_full: int, n_sub: int) -> TrainConfig:
    """Epochs for a smaller training set such that a round takes at least as many SGD steps as on the full one,
    so the data control differs in the data, not in the amount of training."""
    full, sub = iterations_per_epoch(n_full, cfg.batch_size), iterations_per_epoch(n_sub, cfg.batch_size)
    return cfg.replace(epochs=-(-cfg.epochs * full // sub))


class LocalityAnalysis(Stage):
    """IMP on the original data, the controls, and the analysis of the best round; the trainings are stages of
    their own, shared with any analysis that needs the same IMP run."""
    kind = "locality"
    result = LocalityResult

    def __init__(self, data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig, loc: LocalityConfig,
                 root: str | Path, preset: Optional[str] = None, log: Log = None):
        self.data_cfg, self.model_cfg, self.train, self.loc, self.root = data_cfg, model_cfg, cfg, loc, Path(root)
        self.preset, self.log = preset, log
        self.data: Optional[Dataset] = None

    def sections(self) -> dict:
        return {"data": self.data_cfg, "model": self.model_cfg, "train": self.train, "locality": self.loc}

    def record(self) -> dict:
        return {**super().record(), "preset": self.preset}

    @property
    def seed(self) -> int:
        return self.train.seed

    def check(self, ctx) -> None:
        self.data = load_dataset(self.data_cfg)
        check_rewind(self.loc, self.train, len(self.data.train))

    def imp_run(self, label: str, control: dict, data: Dataset, cfg: TrainConfig) -> ImpRun:
        return ImpRun(self.data_cfg, self.model_cfg, cfg, self.loc, control, label, data, self.root, self.log)

    def run(self, ctx) -> LocalityResult:
        loc, data, cfg = self.loc, self.data, self.train
        main = self.imp_run("imp", {}, data, cfg)
        rounds = run_imp(main, ctx)
        summaries = [s for _, s in rounds]
        best = best_round(summaries).round
        trained = {"imp": rounds[best], "dense": rounds[0]}
        if best > 0:  # the controls at the analysed round's sparsity
            for arm in [a for a, on in zip(DERIVED, (loc.oneshot, loc.random_mask)) if on]:
                if self.log:
                    self.log(f"the {arm} mask at round {best}'s sparsity")
                stage = LocalityTraining(main, arm, best, rounds[best][0])
                trained[arm] = (stage, run_stage(stage, self.root, ctx))
        arms = {k: self.analyse(stage, summary, ctx.device) for k, (stage, summary) in trained.items()}

        controls = {}
        if loc.data_fraction:
            sub = train_fraction(data, loc.data_fraction, self.data_cfg.data_seed)
            imp = self.imp_run(f"data_{loc.data_fraction:g}", {"data_fraction": loc.data_fraction}, sub,
                               same_steps(cfg, len(data.train), len(sub.train)))
            controls[imp.label] = [s for _, s in run_imp(imp, ctx)]
        if loc.superclasses:
            imp = self.imp_run(f"superclasses_{loc.superclasses}",
                               {"superclasses": loc.superclasses, "label_seed": loc.label_seed},
                               merge_labels(data, loc.superclasses, loc.label_seed), cfg)
            controls[imp.label] = [s for _, s in run_imp(imp, ctx)]
        every = summaries + [trained[k][1] for k in DERIVED if k in trained] + [s for c in controls.values() for s in c]
        return LocalityResult(rounds=summaries, best_round=best, n_train=len(data.train),
                              n_val=len(data.val) if data.val is not None else 0, n_test=len(data.test),
                              arms=arms, controls={k: ImpControl(v, best_round(v).round) for k, v in controls.items()},
                              train_time_s=sum(s.train_time for s in every))

    def analyse(self, stage: LocalityTraining, summary: RoundSummary, device: torch.device) -> LocalityArm:
        """An analysed arm: its summary and, for a sparse first layer, the unit-removal accuracies."""
        run = stage_dir(stage, self.root)
        ticket = load_ticket(run.file("ticket.pt"), trust_factory=self.model_cfg.model)
        model = ticket_model(ticket).to(device)
        model.load_state_dict(load_state_file(run.file("trained.pt"), "trained state"))
        first = ticket.mask[first_layer(model)]
        removal = None if bool(first.all()) else removal_accuracy(model, ticket.mask, self.data, self.loc.remove_units)
        return LocalityArm(stage.name(), summary, removal)


def first_layer_masks(result: LocalityResult, root: Path) -> dict[str, torch.Tensor]:
    """Each analysed arm's first-layer mask, from its training's ticket."""
    masks = {}
    for k, arm in result.arms.items():
        mask = load_ticket(Path(root) / arm.stage / "ticket.pt").mask
        masks[k] = mask[next(iter(mask))]  # masks list the prunable weights in the model's order
    return masks


def run_locality(data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig, loc: LocalityConfig,
                 device: torch.device, root: str | Path = "runs", preset: Optional[str] = None,
                 log: Log = None) -> tuple[dict, RunDir]:
    """Run (or resume) the analysis, then render its report; returns the results and the analysis' directory."""
    exp = LocalityAnalysis(data_cfg, model_cfg, cfg, loc, root, preset, log)
    result = run_stage(exp, root, RunContext(device))
    run = stage_dir(exp, root)
    results = {"config": exp.record(), **result.flat(), "environment": environment(device)}
    run.write_json("results.json", results)
    from .report import write_report
    write_report(results, first_layer_masks(result, root), run.path, loc)
    return results, run
