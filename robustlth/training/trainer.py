"""The training engine: natural, FGSM, FGSM-RS, N-FGSM and PGD training of dense or masked networks.

Per epoch it logs loss, train accuracy, LR, clean and PGD accuracy on a fixed evaluation subset, and the
cumulative training wall-clock (evaluation timed separately), so time-to-accuracy curves can be drawn.
With a run directory it checkpoints every epoch (atomically, RNG states and every hook's state included)
and resumes exactly.

The loop itself is small because everything else is a hook: per batch it runs the step (with its step
hooks: mask enforcement, then the caller's) and the host-side `on_iteration` hooks (the caller's, then the
rewind capture); per epoch it runs the epoch hooks in order — evaluation, the overfitting guard, the
caller's hooks — then checkpoints. A `RunContext` says where it runs; under data parallelism each process
trains its share of every global batch, evaluation is sharded and summed, and only the primary process writes.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attacks import CWPGD, PGD, training_attack
from ..config import AttackConfig, ConfigError, TrainConfig
from ..data import Dataset, TrainLoader, as_float
from ..device import (memory_format, resolve_channels_last, resolve_cuda_graphs, resolve_precision,
                      synchronize, tune_for_static_shapes)
from ..evaluate import predict, robust_flags
from ..optim import LOSSES, OPTIMIZERS
from ..progress import Progress
from ..runs import RunDir, atomic_torch_save
from ..stats import pack_flags
from .checkpoint import load_checkpoint, save_checkpoint
from .context import RunContext
from .hooks import (AverageAtEnd, AveragedEpochHook, EpochHook, MaskEnforcer, StepHook, TrainingError,
                    WeightAverage, hook_keys, overrides)
from .schedules import lr_at, scaled_for_batch
from .steps import CudaGraphStep, make_step

Mask = dict[str, torch.Tensor]
SINGLE_STEP = ("fgsm", "fgsm_rs", "nfgsm")
GUARD_IMAGES = 256
GUARD_DROP = 0.2  # an absolute drop of PGD accuracy on the guard batch that counts as catastrophic overfitting


@dataclass
class TrainResult:
    history: list[dict]
    train_time: float
    eval_time: float
    stopped: Optional[str] = None
    rewind_state: Optional[dict] = None
    eval_split: str = "test"
    settings: Optional[dict] = None  # what the config's automatic choices resolved to on this device

    @property
    def final(self) -> dict:
        """The last epoch whose weights the model holds (a rolled-back epoch does not count)."""
        kept = [r for r in self.history if not r.get("rolled_back")]
        return kept[-1] if kept else {}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------
# The built-in hooks.

class RewindCapture(StepHook):
    """Keeps the weights after `iteration` optimiser steps (0: the initial weights) for IMP with rewinding.
    They are hook state, so a resumed run still has them; with a run directory they are also rewind.pt, which
    later IMP stages read."""

    def __init__(self, model: nn.Module, iteration: int, path: Optional[Path]):
        self.model, self.iteration, self.path = model, iteration, path
        self.state: Optional[dict] = None

    def start(self, ctx: RunContext, done_iterations: int) -> None:
        if self.state is not None:
            if self.path is not None and not self.path.exists():
                self._write(ctx)
        elif done_iterations >= max(self.iteration, 1):
            raise TrainingError("cannot rewind: the run was resumed past the rewind point, and its checkpoint "
                                "holds no rewind weights")
        elif self.iteration == 0:
            self._capture(ctx)

    def on_iteration(self, ctx: RunContext, iteration: int) -> None:
        if self.state is None and iteration + 1 == self.iteration:
            self._capture(ctx)

    def _capture(self, ctx: RunContext) -> None:
        self.state = _state_copy(self.model)
        if self.path is not None:
            self._write(ctx)

    def _write(self, ctx: RunContext) -> None:
        if ctx.is_primary:
            atomic_torch_save(self.path, self.state)

    def result(self, iterations: int) -> dict:
        """The captured weights; an error when the run's `iterations` never reached the rewind point."""
        if self.state is None:
            raise TrainingError(f"rewind_iteration={self.iteration} is beyond the {iterations} iterations "
                                "of this run")
        return self.state

    def state_dict(self) -> dict:
        return {"weights": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.state = state["weights"]


class Evaluation(EpochHook):
    """Clean accuracy, cross-entropy PGD and CW-margin PGD (the same steps) on a fixed evaluation subset, sharded
    over the processes and summed. Cross-entropy PGD overstates robustness against margin attacks, so the record
    also holds `eval_robust`, the per-image worst case (clean, PGD and CW all correct), which time-to-target
    and the curves use, and `eval_flags`, the packed per-image verdicts ("clean", "pgd", "cw"), so differences
    between arms on these images can be paired image by image."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack, seed: int, precision: str,
                 ctx: RunContext, cw=None):
        self.part = ctx.shard(len(y))
        self.model, self.x, self.y, self.n = model, x[self.part], y[self.part], len(y)
        self.attack, self.cw, self.seed, self.precision = attack, cw, seed, precision
        self.gen = torch.Generator(device=x.device)

    def on_epoch_end(self, ctx: RunContext, epoch: int, record: dict) -> None:
        self.gen.manual_seed(self.seed + 7 + ctx.rank)  # the same random starts every epoch
        flags, loss = predict(self.model, self.x, self.y, precision=self.precision)
        verdicts = [flags]
        for attack in (self.attack, self.cw):  # PGD first: its numbers are those of runs without CW
            if attack is not None:
                verdicts.append(robust_flags(self.model, attack, self.x, self.y, generator=self.gen,
                                             precision=self.precision))
        mine = torch.stack(verdicts, 1).float()
        every = torch.zeros(self.n, mine.shape[1] + 1, device=mine.device)  # every image's verdicts, and the loss
        every[self.part, :-1] = mine
        every[0, -1] = loss.float()
        every = ctx.sum(every)
        v = every[:, :-1].bool()
        record.update(eval_clean=float(v[:, 0].float().mean()), eval_loss=float(every[:, -1].sum()) / self.n)
        names = ["clean"]
        if self.attack is not None:
            record["eval_pgd"] = float(v[:, 1].float().mean())
            names.append("pgd")
        if self.cw is not None:
            record["eval_cw"] = float(v[:, -1].float().mean())
            names.append("cw")
        if len(names) > 1:
            record["eval_robust"] = float(v.all(1).float().mean())
        record["eval_flags"] = {name: pack_flags(v[:, i]) for i, name in enumerate(names)}


class OverfitGuard(EpochHook):
    """Catastrophic-overfitting guard for single-step attacks: when PGD-10 accuracy on a training batch drops
    by more than GUARD_DROP below its best, the weights roll back to the previous epoch and training stops."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int, precision: str,
                 ctx: RunContext, log: Optional[Callable[[str], None]] = None):
        part = ctx.shard(len(y))
        self.model, self.x, self.y, self.n = model, x[part], y[part], len(y)
        self.attack, self.seed, self.precision, self.log = PGD(eps, steps=10), seed, precision, log
        self.gen = torch.Generator(device=x.device)
        self.best: Optional[float] = None
        self.last_good = _state_copy(model)

    def on_epoch_end(self, ctx: RunContext, epoch: int, record: dict) -> Optional[str]:
        self.gen.manual_seed(self.seed + 7 + ctx.rank)
        flags = robust_flags(self.model, self.attack, self.x, self.y, generator=self.gen, precision=self.precision)
        count = torch.tensor(float(flags.numel()), device=flags.device)
        correct, count = ctx.sum(torch.stack([flags.sum().float(), count])).tolist()
        acc = correct / count
        record["guard_pgd"] = acc
        if self.best is not None and acc < self.best - GUARD_DROP:
            self.model.load_state_dict(self.last_good)
            stopped = (f"catastrophic overfitting at epoch {epoch + 1}: PGD-10 accuracy on a training batch fell "
                       f"from {self.best:.3f} to {acc:.3f}; rolled back to epoch {epoch} and stopped")
            record.update(stopped=stopped, rolled_back=True)
            if self.log and ctx.is_primary:
                self.log(stopped)
            return "stop"
        self.best = acc if self.best is None else max(self.best, acc)
        self.last_good = _state_copy(self.model)
        return None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        """Called once the checkpoint's weights are loaded: they are the last good epoch's."""
        self.best = state["best"]
        self.last_good = _state_copy(self.model)


# ----------------------------------------------------------------------------------------------------
# A run: everything built once, then the loop.

@dataclass
class _LoopState:
    """What a checkpoint holds besides weights, optimiser, RNG and hook states."""
    history: list[dict] = field(default_factory=list)
    epoch: int = 0  # epochs done
    train_time: float = 0.0
    eval_time: float = 0.0
    stopped: Optional[str] = None


def _settings(cfg: TrainConfig, ctx: RunContext) -> dict:
    """What the config's automatic choices resolve to on this device."""
    precision = resolve_precision(ctx.device, cfg.precision)
    channels_last = resolve_channels_last(ctx.device, cfg.channels_last)
    if ctx.distributed and cfg.cuda_graphs:
        raise ConfigError("invalid cuda_graphs=True: CUDA graphs are not supported with several processes; use "
                          "--no-cuda-graphs")
    cuda_graphs = resolve_cuda_graphs(ctx.device, cfg.cuda_graphs, precision, cfg.compile) and not ctx.distributed
    return {"precision": precision, "channels_last": channels_last, "cuda_graphs": cuda_graphs,
            "lr": cfg.lr, "warmup_epochs": cfg.warmup_epochs, "world_size": ctx.world_size}


def _train_loader(data: Dataset, cfg: TrainConfig, ctx: RunContext, augment: bool, fmt) -> TrainLoader:
    spec = getattr(data, "spec", None)
    try:
        return TrainLoader(data.train, cfg.batch_size, ctx.device, cfg.seed, augment, fmt,
                           flips=spec.flips if spec is not None else True, rank=ctx.rank, world_size=ctx.world_size)
    except ValueError as e:
        raise ConfigError(f"invalid batch_size={cfg.batch_size}: {e}") from None


def _builtin_epoch_hooks(model: nn.Module, data: Dataset, cfg: TrainConfig, attack_cfg: AttackConfig,
                         ctx: RunContext, precision: str, log) -> list[EpochHook]:
    """Evaluation (on the validation split when there is one), and the guard for single-step attacks."""
    held_out = data.val if data.val is not None else data.test
    hooks: list[EpochHook] = [Evaluation(model, *as_float(held_out, ctx.device, cfg.eval_n),
                                         PGD(attack_cfg.eps, steps=cfg.eval_steps) if cfg.eval_steps else None,
                                         cfg.seed, precision, ctx,
                                         CWPGD(attack_cfg.eps, steps=cfg.eval_steps) if cfg.eval_steps else None)]
    if cfg.guard and attack_cfg.attack in SINGLE_STEP:
        hooks.append(OverfitGuard(model, *as_float(data.train, ctx.device, GUARD_IMAGES), attack_cfg.eps, cfg.seed,
                                  precision, ctx, log))
    return hooks


class _Run:
    """One call of `train`: the model on its device, loader, optimiser, step and hooks, built once."""

    def __init__(self, model: nn.Module, data: Dataset, cfg: TrainConfig, attack_cfg: AttackConfig,
                 ctx: RunContext, mask: Optional[Mask], rewind_iteration: Optional[int], augment: bool, log,
                 step_hooks: Sequence[StepHook], epoch_hooks: Sequence[EpochHook], describe: Optional[dict]):
        self.cfg, self.ctx, self.mask, self.describe = scaled_for_batch(cfg), ctx, mask, describe
        cfg, device, run = self.cfg, ctx.device, ctx.run_dir
        self.settings = _settings(cfg, ctx)
        precision, fmt = self.settings["precision"], memory_format(self.settings["channels_last"])
        self.say = log if (log and ctx.is_primary) else None
        self.label = (describe or {}).get("kind") or "train"  # says which phase an epoch line belongs to
        tune_for_static_shapes(device)
        if ctx.sync_bn and ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device=device, memory_format=fmt)
        masking = [MaskEnforcer(model, mask)] if mask else []  # masks the weights now, then every step
        step_model = torch.compile(model) if cfg.compile else model
        attack = training_attack(attack_cfg)
        self.opt = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
        scaler = torch.amp.GradScaler(device.type) if (precision == "fp16" and device.type == "cuda") else None
        self.loader = _train_loader(data, cfg, ctx, augment, fmt)
        self.ipe = len(self.loader)
        self.eval_split = "val" if data.val is not None else "test"
        self.spec = getattr(data, "spec", None)
        builtin = _builtin_epoch_hooks(model, data, cfg, attack_cfg, ctx, precision, log)
        # A weight average (cfg.ema): updated last in every step, evaluated each epoch (the guard watches the live
        # weights), and put into the model when training ends.
        self.average = WeightAverage(model, cfg.ema) if cfg.ema else None
        if self.average is not None:
            builtin[0] = AveragedEpochHook(self.average, builtin[0])
        self.epoch_hooks = builtin + list(epoch_hooks) + \
            ([AverageAtEnd(self.average, cfg.epochs)] if self.average is not None else [])
        self.rewind = RewindCapture(model, rewind_iteration, run.file("rewind.pt") if run else None) \
            if rewind_iteration is not None else None
        step_hooks = masking + list(step_hooks) + ([self.average] if self.average is not None else []) + \
            ([self.rewind] if self.rewind else [])
        self.iteration_hooks = [h for h in step_hooks if overrides(h, "on_iteration")]
        self.hooks = hook_keys(step_hooks + self.epoch_hooks)
        forward_model = ctx.wrap(step_model)
        self.step = make_step(forward_model, self.opt, attack, device, precision, scaler,
                              self.settings["cuda_graphs"], step_hooks,
                              attack_model=step_model if forward_model is not step_model else None,
                              loss_fn=LOSSES[cfg.loss](cfg), log=self.say)
        self.settings["cuda_graphs"] = isinstance(self.step, CudaGraphStep)
        self.ckpt_path = run.file("checkpoint.pt") if run else None

    def resume(self) -> _LoopState:
        """The run directory's checkpoint restored into model, optimiser, RNGs and hooks; else a fresh start."""
        run, state = self.ctx.run_dir, _LoopState()
        if run is not None and self.ctx.is_primary:
            run.remove_stale_tmp()  # a kill inside a checkpoint write leaves its temporary file
        if self.ckpt_path is not None and self.ckpt_path.exists():
            state = _LoopState(**load_checkpoint(self.ckpt_path, self.model, self.opt, self.hooks))
        else:
            seed_everything(self.cfg.seed)
        if run is not None and self.ctx.is_primary:
            run.rewrite_metrics(state.history)  # lines logged after the last checkpoint would otherwise repeat
        for hook in self.hooks.values():
            hook.start(self.ctx, state.epoch * self.ipe)
        if state.epoch and self.say:  # said once everything the run resumes from has loaded
            self.say(f"resuming {run.path} from epoch {state.epoch} of {self.cfg.epochs}")
        return state

    def train_epoch(self, epoch: int, progress: bool) -> tuple[dict, float]:
        """One pass over the training data: the epoch's record so far and its wall-clock seconds."""
        device, cfg, ipe = self.ctx.device, self.cfg, self.ipe
        self.model.train()
        synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        batches = self.loader.epoch(epoch)
        bar = Progress(f"{self.label} epoch {epoch + 1}/{cfg.epochs}", ipe, enabled=progress and self.ctx.is_primary)
        for i, (x, y) in enumerate(batches):
            it = epoch * ipe + i
            lr = lr_at(cfg, it, ipe)
            self.step.set_lr(lr)
            loss, out = self.step(x, y)
            loss_sum += loss * y.shape[0]
            correct += (out.argmax(1) == y).sum()
            seen += y.shape[0]
            for hook in self.iteration_hooks:
                hook.on_iteration(self.ctx, it)
            if bar.enabled:  # a host sync, only when progress is shown
                bar.update(1, **({"loss": f"{float(loss):.3f}"} if i % 10 == 0 else {}))
        bar.close()
        totals = self.ctx.sum(torch.stack([loss_sum.float(), correct.float(),
                                           torch.tensor(float(seen), device=device)])).tolist()
        synchronize(device)
        record = {"epoch": epoch + 1, "lr": lr, "loss": totals[0] / totals[2], "train_acc": totals[1] / totals[2],
                  # this process's CPU seconds (all its threads) and the machine's 1-minute load, beside the wall clock
                  "cpu_s": round(time.process_time() - c0, 3), "load_avg": _load_average()}
        return record, time.perf_counter() - t0

    def end_epoch(self, state: _LoopState, epoch: int, record: dict) -> None:
        """The epoch hooks (timed apart from training), then the log line, metrics and checkpoint."""
        t1 = time.perf_counter()
        self.ctx.broadcast_buffers(self.model)  # BatchNorm statistics were kept per process
        for hook in self.epoch_hooks:
            if hook.on_epoch_end(self.ctx, epoch, record) == "stop" and not state.stopped:
                state.stopped = record.get("stopped") or f"stopped by {type(hook).__name__} after epoch {epoch + 1}"
                record["stopped"] = state.stopped
        synchronize(self.ctx.device)
        state.eval_time += time.perf_counter() - t1
        record.update(train_time=round(state.train_time, 3), eval_time=round(state.eval_time, 3),
                      eval_split=self.eval_split)
        state.history.append(record)
        state.epoch = epoch + 1
        if self.say:
            self.say(f"{self.label} " + _format_record(record))
        if self.ckpt_path is not None and self.ctx.is_primary:
            self.ctx.run_dir.log(record)
            save_checkpoint(self.ckpt_path, self.model, self.opt, describe=self.describe, mask=self.mask,
                            **vars(state), hooks={k: h.state_dict() for k, h in self.hooks.items()},
                            data_spec=self.spec.to_dict() if self.spec is not None else None)


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, attack_cfg: AttackConfig = AttackConfig(),
          device: Optional[torch.device] = None, run: Optional[RunDir] = None, mask: Optional[Mask] = None,
          rewind_iteration: Optional[int] = None, augment: bool = True, progress: bool = False,
          log: Optional[Callable[[str], None]] = None, ctx: Optional[RunContext] = None,
          step_hooks: Sequence[StepHook] = (), epoch_hooks: Sequence[EpochHook] = (),
          describe: Optional[dict] = None) -> TrainResult:
    """Train `model` in place. Returns the per-epoch history and the wall-clock split.

    `ctx` says where the run happens (device, process rank, run directory); `device`/`run` build a
    single-process one. `step_hooks` run inside every step after mask enforcement; `epoch_hooks` run after the
    built-in evaluation and guard, and before the checkpoint. `rewind_iteration=k` also returns the weights
    after k optimiser steps (k = 0: the initial weights), for IMP with rewinding. `describe`
    (training.checkpoint.describe_run) goes into every checkpoint, with the mask.
    """
    if ctx is None:
        if device is None:
            raise TypeError("train() needs a device or a RunContext")
        ctx = RunContext(device)
    r = _Run(model, data, cfg, attack_cfg, ctx.with_run_dir(run) if run is not None else ctx, mask,
             rewind_iteration, augment, log, step_hooks, epoch_hooks, describe)
    state = r.resume()
    for epoch in range(state.epoch, r.cfg.epochs):
        if state.stopped:
            break
        record, seconds = r.train_epoch(epoch, progress)
        state.train_time += seconds
        r.end_epoch(state, epoch, record)
    rewind_state = r.rewind.result(r.cfg.epochs * r.ipe) if r.rewind is not None else None
    r.ctx.barrier()  # no process returns (and starts writing results) before the last checkpoint is on disk
    return TrainResult(history=state.history, train_time=state.train_time, eval_time=state.eval_time,
                       stopped=state.stopped, rewind_state=rewind_state, eval_split=r.eval_split,
                       settings=r.settings)


def _load_average() -> Optional[float]:
    """The machine's 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _format_record(r: dict) -> str:
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.3f}", f"train {r['train_acc']:.3f}",
             f"clean {r['eval_clean']:.3f}"]
    if "eval_pgd" in r:
        parts.append(f"pgd {r['eval_pgd']:.3f}")
    if "eval_cw" in r:
        parts.append(f"cw {r['eval_cw']:.3f}")
    parts.append(f"lr {r['lr']:.4f}")
    parts.append(f"time {r['train_time']:.1f}s (+{r['eval_time']:.1f}s eval)")
    return " | ".join(parts)


__all__ = ["train", "TrainResult", "TrainingError", "MaskEnforcer", "RewindCapture", "Evaluation", "OverfitGuard",
           "seed_everything", "lr_at"]
