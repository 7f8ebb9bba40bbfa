"""The `train` pipeline as a library call: configs and an optional ticket in, a finished run directory out.

It checks everything checkable (device settings, the ticket against the model and data) before any file is
written; the run is a stage (`TrainStage`), so it is named by its config hash, resumed where it stopped,
reopened when done, and under data parallelism only the primary process writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch.nn as nn

from .config import AttackConfig, DataConfig, ModelConfig, TrainConfig
from .data import Dataset, load_dataset
from .datasets import DatasetSpec
from .device import check_device_settings
from .errors import UsageError
from .models import build_checked_model, build_model, check_model_name, check_model_output
from .progress import tee_log
from .runs import RunDir
from .safety import file_digest
from .stages import Result, Stage, run_stage
from .training import RunContext, seed_everything, train
from .training.checkpoint import describe_run, load_weights


def ticket_model_config(ticket, model_cfg: ModelConfig, model_given: bool, path) -> ModelConfig:
    """The model a ticket fixes; a clash with an explicitly given model is an error."""
    meta = ticket.meta
    if model_given and (model_cfg.model, model_cfg.width) != (meta.model, meta.width):
        raise UsageError(f"--mask {path} is a ticket for {meta.model} at width {meta.width}, "
                         f"not {model_cfg.model} at width {model_cfg.width}")
    from .errors import ConfigError
    from .pruning.ticket import TicketError, ticket_data_spec
    try:
        ticket_model = ModelConfig(model=meta.model, width=meta.width)
    except (ConfigError, TypeError) as e:
        raise TicketError(f"--mask {path}: its metadata names no usable model ({e})") from None
    try:
        ticket_data_spec(ticket)
    except (TypeError, KeyError, ValueError) as e:
        raise TicketError(f"--mask {path}: its metadata's data_spec is not a dataset record "
                          f"({type(e).__name__}: {e})") from None
    return ticket_model


def check_ticket_data(ticket, spec: DatasetSpec, path) -> None:
    """A ticket's classifier fits only data with its class count."""
    from .pruning.ticket import ticket_data_spec
    ticket_spec = ticket_data_spec(ticket)
    if ticket_spec.num_classes != spec.num_classes:
        raise UsageError(f"--mask {path} is a ticket for {ticket_spec.name} ({ticket_spec.num_classes} classes), "
                         f"but the data is {spec.name} with {spec.num_classes} classes")


def check_train_model(model_cfg: ModelConfig, data: Dataset, ticket=None, path=None) -> None:
    """The model a train run trains, built and tried before anything is written: a ticket's tensors must fit
    its architecture (shapes compared before a model of the recorded size is allocated; the file named), and one
    sample batch of the data's images must give one logit per class (a user factory that raises, fails in its
    forward or has the wrong class count is one line, not a traceback inside training)."""
    import torch
    image = tuple(data.train.x.shape[1:])
    if ticket is None:
        build_checked_model(model_cfg.model, model_cfg.width, data.spec, image)
        return
    from .models.shrink import state_mismatch
    from .pruning import ticket_model
    from .pruning.ticket import TicketError, ticket_data_spec
    where = f"--mask {path}" if path is not None else "the ticket"
    meta = ticket.meta
    problem = state_mismatch(meta.model, meta.width, ticket_data_spec(ticket), ticket.state_dict)
    if problem:
        raise TicketError(f"{where} does not fit {meta.model} at width {meta.width:g}, the model it names: {problem}")
    with torch.random.fork_rng(devices=[]):
        try:
            model = ticket_model(ticket)
            ticket.full_mask(model)
        except (TicketError, ValueError) as e:
            raise TicketError(f"{where}: {e}") from None
    check_model_output(model, meta.model, data.spec, image)


@dataclass
class TrainRunResult(Result):
    final: dict  # the last kept epoch's record
    train_time: float
    eval_time: float
    stopped: Optional[str]
    eval_split: str
    data_spec: dict
    world_size: int
    history: list
    settings: Optional[dict] = None


@dataclass
class TrainStage(Stage):
    """One `robustlth train` run: a dense model, or a ticket (`mask_id` names it in the hash) trained from its
    stored weights."""
    kind: ClassVar[str] = "train"
    result: ClassVar[type] = TrainRunResult
    data_cfg: DataConfig
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    attack_cfg: AttackConfig
    mask_id: Optional[str] = None
    mask_path: Optional[Path] = field(default=None, compare=False)
    ticket: Any = field(default=None, compare=False)
    data: Optional[Dataset] = field(default=None, compare=False)
    progress: bool = field(default=False, compare=False)
    log: Optional[Callable[[str], None]] = field(default=None, compare=False)

    def sections(self) -> dict[str, Any]:
        return {"data": self.data_cfg, "model": self.model_cfg, "train": self.train_cfg, "attack": self.attack_cfg,
                "mask": self.mask_id}

    def record(self) -> dict:
        return {"data": self.data_cfg.to_dict(), "model": self.model_cfg.to_dict(), "train": self.train_cfg.to_dict(),
                "attack": self.attack_cfg.to_dict(), "mask": str(self.mask_path) if self.mask_path else None}

    @property
    def seed(self) -> int:
        return self.train_cfg.seed

    def build(self) -> tuple[nn.Module, Optional[dict]]:
        """The model at its starting weights, and the ticket's mask (None: dense)."""
        seed_everything(self.train_cfg.seed)
        if self.ticket is None:
            return build_model(self.model_cfg.model, self.model_cfg.width, self.data.spec), None
        from .pruning import ticket_model
        model = ticket_model(self.ticket)
        return model, self.ticket.full_mask(model)

    def run(self, ctx: RunContext) -> TrainRunResult:
        run = ctx.run_dir
        log = tee_log(self.log, run.file("run.log")) if ctx.is_primary else None
        if log and not run.file("checkpoint.pt").exists():
            log(f"run directory: {run.path}")  # a resumed run says so once its checkpoint has loaded
        model, mask = self.build()
        kind = "ticket training" if self.ticket is not None else "train"
        result = train(model, self.data, self.train_cfg, self.attack_cfg, ctx=ctx, mask=mask,
                       augment=self.data_cfg.augment, progress=self.progress, log=log,
                       describe=describe_run(self.model_cfg.model, self.model_cfg.width, self.data_cfg.to_dict(),
                                             kind=kind))
        return TrainRunResult(final=result.final, train_time=result.train_time, eval_time=result.eval_time,
                              stopped=result.stopped, eval_split=result.eval_split,
                              data_spec=self.data.spec.to_dict(), world_size=ctx.world_size,
                              history=result.history, settings=result.settings)


def run_train(data_cfg: DataConfig, model_cfg: ModelConfig, train_cfg: TrainConfig, attack_cfg: AttackConfig,
              ctx: RunContext, out: str | Path = "runs", mask_path: Optional[Path] = None,
              model_given: bool = True, explicit: frozenset = frozenset(), data: Optional[Dataset] = None,
              progress: bool = False, log: Optional[Callable[[str], None]] = None, ticket=None,
              ticket_id: Optional[str] = None, trust_factory=None) -> tuple[TrainRunResult, RunDir, nn.Module]:
    """Train (or resume, or reopen) the run these configs name under `out`; returns its result, directory and
    trained model.

    With `mask_path` (a ticket file from find-ticket) or `ticket` (one in memory, named in the run hash by
    `ticket_id`) the ticket's sparse subnetwork is trained from its stored weights, on the ticket's retraining
    schedule unless a field is in `explicit` (given by the user). A model factory the ticket file names is
    imported only when it is the user's given model or in `trust_factory` (names, comma lists, factories).
    """
    check_device_settings(ctx.device, train_cfg.precision, train_cfg.cuda_graphs, train_cfg.compile)
    check_model_name(model_cfg.model)  # before the ticket and the data load
    mask_id = ticket_id
    if mask_path is not None:
        from .pruning import load_ticket
        ticket, mask_id = load_ticket(mask_path), file_digest(mask_path)
    if ticket is not None:
        from .pruning import retrain_schedule
        model_cfg = ticket_model_config(ticket, model_cfg, model_given, mask_path or "the ticket")
        if mask_path is not None:  # a factory the ticket file names: built only when the user names or trusts it
            from .factory import trusted_factories
            from .pruning.ticket import check_ticket_factory
            named = {model_cfg.model} if model_given else set()  # given and not clashing: the user named it
            check_ticket_factory(ticket, trusted_factories(trust_factory) | named, allow="cli+model")
        train_cfg = retrain_schedule(train_cfg, ticket.meta, explicit=set(explicit))
    data = data if data is not None else load_dataset(data_cfg)
    if ticket is not None:
        check_ticket_data(ticket, data.spec, mask_path)
    if train_cfg.batch_size % ctx.world_size:
        raise UsageError(f"--batch-size {train_cfg.batch_size} (the global batch) does not split over "
                         f"{ctx.world_size} processes; use a multiple of {ctx.world_size}")
    check_train_model(model_cfg, data, ticket, mask_path)
    stage = TrainStage(data_cfg, model_cfg, train_cfg, attack_cfg, mask_id, mask_path, ticket, data, progress,
                       log if ctx.is_primary else None)
    result = run_stage(stage, out, ctx)
    model, _ = stage.build()  # the trained weights, from the run's last checkpoint
    load_weights(stage.path(out) / "checkpoint.pt", model)
    return result, RunDir(stage.path(out)), model.to(ctx.device)
