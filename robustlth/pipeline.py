"""The `train` pipeline as a library call: configs and an optional ticket in, a finished run directory out.

It checks everything checkable (device settings, the ticket against the model and data) before any file is
written, names the run by its config hash, resumes a run that is already there, and under data parallelism
lets only the primary process create and write the run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch.nn as nn

from .config import AttackConfig, DataConfig, ModelConfig, TrainConfig, config_hash
from .data import Dataset, load_dataset
from .datasets import DatasetSpec
from .device import check_device_settings
from .errors import UsageError
from .models import build_model, check_model_name
from .progress import tee_log
from .runs import RunDir
from .safety import file_digest
from .training import RunContext, TrainResult, seed_everything, train
from .training.checkpoint import describe_run


def ticket_model_config(ticket, model_cfg: ModelConfig, model_given: bool, path) -> ModelConfig:
    """The model a ticket fixes; a clash with an explicitly given model is an error."""
    meta = ticket.meta
    if model_given and (model_cfg.model, model_cfg.width) != (meta.model, meta.width):
        raise UsageError(f"--mask {path} is a ticket for {meta.model} at width {meta.width}, "
                         f"not {model_cfg.model} at width {model_cfg.width}")
    return ModelConfig(model=meta.model, width=meta.width)


def check_ticket_data(ticket, spec: DatasetSpec, path) -> None:
    """A ticket's classifier fits only data with its class count."""
    from .pruning.ticket import ticket_data_spec
    ticket_spec = ticket_data_spec(ticket)
    if ticket_spec.num_classes != spec.num_classes:
        raise UsageError(f"--mask {path} is a ticket for {ticket_spec.name} ({ticket_spec.num_classes} classes), "
                         f"but the data is {spec.name} with {spec.num_classes} classes")


def run_train(data_cfg: DataConfig, model_cfg: ModelConfig, train_cfg: TrainConfig, attack_cfg: AttackConfig,
              ctx: RunContext, out: str | Path = "runs", mask_path: Optional[Path] = None,
              model_given: bool = True, explicit: frozenset = frozenset(), data: Optional[Dataset] = None,
              progress: bool = False, log: Optional[Callable[[str], None]] = None, ticket=None,
              ticket_id: Optional[str] = None) -> tuple[TrainResult, RunDir, nn.Module]:
    """Train (or resume) the run these configs name under `out`; returns its result, directory and model.

    With `mask_path` (a ticket file from find-ticket) or `ticket` (one in memory, named in the run hash by
    `ticket_id`) the ticket's sparse subnetwork is trained from its stored weights, on the ticket's retraining
    schedule unless a field is in `explicit` (given by the user).
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
        train_cfg = retrain_schedule(train_cfg, ticket.meta, explicit=set(explicit))
    config = {"data": data_cfg.to_dict(), "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
              "attack": attack_cfg.to_dict(), "mask": str(mask_path) if mask_path else None}
    run_hash = config_hash("train", {"data": data_cfg, "model": model_cfg, "train": train_cfg,
                                     "attack": attack_cfg, "mask": mask_id})
    data = data if data is not None else load_dataset(data_cfg)
    if ticket is not None:
        check_ticket_data(ticket, data.spec, mask_path)
    if train_cfg.batch_size % ctx.world_size:
        raise UsageError(f"--batch-size {train_cfg.batch_size} (the global batch) does not split over "
                         f"{ctx.world_size} processes; use a multiple of {ctx.world_size}")
    run = ctx.open_run(out, "train", run_hash, config, train_cfg.seed)
    if ctx.is_primary:
        log = tee_log(log, run.file("run.log"))
    with ctx.hold(run):
        if log and ctx.is_primary and not run.file("checkpoint.pt").exists():
            log(f"run directory: {run.path}")  # a resumed run says so once its checkpoint has loaded
        seed_everything(train_cfg.seed)
        mask = None
        if ticket is not None:
            from .pruning import ticket_model
            model = ticket_model(ticket)
            mask = ticket.full_mask(model)
        else:
            model = build_model(model_cfg.model, model_cfg.width, data.spec)
        result = train(model, data, train_cfg, attack_cfg, ctx=ctx.with_run_dir(run), mask=mask,
                       augment=data_cfg.augment, progress=progress, log=log,
                       describe=describe_run(model_cfg.model, model_cfg.width, data_cfg.to_dict(),
                                             kind="ticket training" if ticket is not None else "train"))
        if ctx.is_primary:
            run.write_json("results.json", {"final": result.final, "train_time": result.train_time,
                                            "eval_time": result.eval_time, "stopped": result.stopped,
                                            "eval_split": result.eval_split, "data_spec": data.spec.to_dict(),
                                            "world_size": ctx.world_size, "history": result.history})
        ctx.barrier()
    return result, run, model
