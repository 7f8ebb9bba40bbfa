"""The training engine: natural, FGSM, FGSM-RS, N-FGSM and PGD training of dense or masked networks.

Per epoch it logs loss, train accuracy, LR, clean and PGD accuracy on a fixed evaluation subset, and the
cumulative training wall-clock (evaluation timed separately), so time-to-accuracy curves can be drawn.
With a run directory it checkpoints every epoch (atomically, RNG states included) and resumes exactly.

The loop itself is small: per batch it runs the step (with its step hooks) and the host-side `on_iteration`
hooks; per epoch it runs the epoch hooks in order — evaluation, the overfitting guard, the caller's hooks —
then checkpoints. A `RunContext` says where it runs; under data parallelism each process trains its share
of every global batch, evaluation is sharded and summed, and only the primary process writes.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attacks import PGD, training_attack
from ..config import AttackConfig, ConfigError, TrainConfig
from ..data import Dataset, TrainLoader, as_float
from ..device import (memory_format, resolve_channels_last, resolve_cuda_graphs, resolve_precision,
                      synchronize, tune_for_static_shapes)
from ..evaluate import predict, robust_flags
from ..progress import Progress
from ..runs import RunDir, atomic_torch_save
from .checkpoint import load_checkpoint, load_state_file, save_checkpoint
from .context import RunContext
from .hooks import EpochHook, MaskEnforcer, StepHook, TrainingError, overrides
from .schedules import lr_at, scaled_for_batch
from .steps import make_step

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
    """Keeps the weights after `iteration` optimiser steps (0: the initial weights) for IMP with rewinding;
    with a run directory they are kept on disk, so a resumed run still has them."""

    def __init__(self, model: nn.Module, iteration: int, path: Optional[Path]):
        self.model, self.iteration, self.path = model, iteration, path
        self.state: Optional[dict] = None

    def start(self, ctx: RunContext, done_iterations: int) -> None:
        if self.path is not None and self.path.exists():
            self.state = load_state_file(self.path, "rewind state")
        elif done_iterations >= max(self.iteration, 1):
            raise TrainingError("cannot rewind: the run was resumed past the rewind point and rewind.pt is missing")
        elif self.iteration == 0:
            self._capture(ctx)

    def on_iteration(self, ctx: RunContext, iteration: int) -> None:
        if self.state is None and iteration + 1 == self.iteration:
            self._capture(ctx)

    def _capture(self, ctx: RunContext) -> None:
        self.state = _state_copy(self.model)
        if self.path is not None and ctx.is_primary:
            atomic_torch_save(self.path, self.state)


class Evaluation(EpochHook):
    """Clean and PGD accuracy on a fixed evaluation subset, sharded over the processes and summed."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack, seed: int, precision: str,
                 ctx: RunContext):
        part = ctx.shard(len(y))
        self.model, self.x, self.y, self.n = model, x[part], y[part], len(y)
        self.attack, self.seed, self.precision = attack, seed, precision
        self.gen = torch.Generator(device=x.device)

    def on_epoch_end(self, ctx: RunContext, epoch: int, record: dict) -> None:
        self.gen.manual_seed(self.seed + 7 + ctx.rank)  # the same random starts every epoch
        flags, loss = predict(self.model, self.x, self.y, precision=self.precision)
        sums = [flags.sum().float(), loss.float()]
        if self.attack is not None:
            sums.append(robust_flags(self.model, self.attack, self.x, self.y, generator=self.gen,
                                     precision=self.precision).sum().float())
        sums = ctx.sum(torch.stack(sums)).tolist()
        record.update(eval_clean=sums[0] / self.n, eval_loss=sums[1] / self.n)
        if self.attack is not None:
            record["eval_pgd"] = sums[2] / self.n


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
        self.best = state.get("best")


def _hook_key(i: int, hook) -> str:
    return f"{i}:{type(hook).__name__}"


# ----------------------------------------------------------------------------------------------------
# The loop.

def train(model: nn.Module, data: Dataset, cfg: TrainConfig, attack_cfg: AttackConfig = AttackConfig(),
          device: Optional[torch.device] = None, run: Optional[RunDir] = None, mask: Optional[Mask] = None,
          rewind_iteration: Optional[int] = None, augment: bool = True, progress: bool = False,
          log: Optional[Callable[[str], None]] = None, ctx: Optional[RunContext] = None,
          step_hooks: Sequence[StepHook] = (), epoch_hooks: Sequence[EpochHook] = (),
          describe: Optional[dict] = None) -> TrainResult:
    """Train `model` in place. Returns the per-epoch history and the wall-clock split.

    `ctx` says where the run happens (device, process rank, run directory); `device`/`run` build a
    single-process one. `step_hooks` join mask enforcement inside every step; `epoch_hooks` run after the
    built-in evaluation and guard, and before the checkpoint. `rewind_iteration=k` also returns the weights
    after k optimiser steps (k = 0: the initial weights), for IMP with rewinding. `describe`
    (training.checkpoint.describe_run) goes into every checkpoint, with the mask.
    """
    if ctx is None:
        if device is None:
            raise TypeError("train() needs a device or a RunContext")
        ctx = RunContext(device)
    if run is not None:
        ctx = ctx.with_run_dir(run)
    device, run = ctx.device, ctx.run_dir
    cfg = scaled_for_batch(cfg)
    precision = resolve_precision(device, cfg.precision)
    channels_last = resolve_channels_last(device, cfg.channels_last)
    if ctx.distributed and cfg.cuda_graphs:
        raise ConfigError("invalid cuda_graphs=True: CUDA graphs are not supported with several processes; use "
                          "--no-cuda-graphs")
    cuda_graphs = resolve_cuda_graphs(device, cfg.cuda_graphs, precision, cfg.compile) and not ctx.distributed
    settings = {"precision": precision, "channels_last": channels_last, "cuda_graphs": cuda_graphs,
                "lr": cfg.lr, "warmup_epochs": cfg.warmup_epochs, "world_size": ctx.world_size}
    fmt = memory_format(channels_last)
    label = (describe or {}).get("kind") or "train"  # says which phase an epoch line belongs to
    tune_for_static_shapes(device)
    if ctx.sync_bn and ctx.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device=device, memory_format=fmt)
    enforcer = MaskEnforcer(model, mask)
    step_model = torch.compile(model) if cfg.compile else model
    attack = training_attack(attack_cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if (precision == "fp16" and device.type == "cuda") else None

    spec = getattr(data, "spec", None)
    try:
        loader = TrainLoader(data.train, cfg.batch_size, device, cfg.seed, augment, fmt,
                             flips=spec.flips if spec is not None else True, rank=ctx.rank,
                             world_size=ctx.world_size)
    except ValueError as e:
        raise ConfigError(f"invalid batch_size={cfg.batch_size}: {e}") from None
    ipe = len(loader)
    eval_split = "val" if data.val is not None else "test"
    x_eval, y_eval = as_float(data.val if data.val is not None else data.test, device, cfg.eval_n)
    hooks_before: list[EpochHook] = [Evaluation(model, x_eval, y_eval,
                                                PGD(attack_cfg.eps, steps=cfg.eval_steps) if cfg.eval_steps else None,
                                                cfg.seed, precision, ctx)]
    guard = None
    if cfg.guard and attack_cfg.attack in SINGLE_STEP:
        guard = OverfitGuard(model, *as_float(data.train, device, GUARD_IMAGES), attack_cfg.eps, cfg.seed,
                             precision, ctx, log)
        hooks_before.append(guard)
    all_epoch_hooks = hooks_before + list(epoch_hooks)
    rewind = RewindCapture(model, rewind_iteration, run.file("rewind.pt") if run else None) \
        if rewind_iteration is not None else None
    step_hooks = list(step_hooks)
    iteration_hooks = [h for h in step_hooks if overrides(h, "on_iteration")] + ([rewind] if rewind else [])
    forward_model = ctx.wrap(step_model)
    step = make_step(forward_model, opt, attack, enforcer, device, precision, scaler, cuda_graphs, step_hooks,
                     attack_model=step_model if forward_model is not step_model else None)

    # --- resume ------------------------------------------------------------------------------------
    history: list[dict] = []
    start_epoch, train_time, eval_time, stopped = 0, 0.0, 0.0, None
    ckpt_path = run.file("checkpoint.pt") if run else None
    if run is not None and ctx.is_primary:
        run.remove_stale_tmp()  # a kill inside a checkpoint write leaves its temporary file
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, model, opt)
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        train_time, eval_time, stopped = ckpt["train_time"], ckpt["eval_time"], ckpt["stopped"]
        if guard is not None:
            guard.load_state_dict({"best": ckpt["guard_best"]})
            guard.last_good = _state_copy(model)
        saved = ckpt.get("hooks") or {}
        for i, hook in enumerate(step_hooks + list(epoch_hooks)):
            if _hook_key(i, hook) in saved:
                hook.load_state_dict(saved[_hook_key(i, hook)])
    else:
        seed_everything(cfg.seed)
    if run is not None and ctx.is_primary:
        run.rewrite_metrics(history)  # lines logged after the last checkpoint would otherwise repeat
    if rewind is not None:
        rewind.start(ctx, start_epoch * ipe)
    say = log if (log and ctx.is_primary) else None
    if start_epoch and say:  # said once everything the run resumes from has loaded
        say(f"resuming {run.path} from epoch {start_epoch} of {cfg.epochs}")

    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if stopped:
            break
        model.train()
        synchronize(device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        batches = loader.epoch(epoch)
        bar = Progress(f"{label} epoch {epoch + 1}/{cfg.epochs}", ipe, enabled=progress and ctx.is_primary)
        for i, (x, y) in enumerate(batches):
            it = epoch * ipe + i
            lr = lr_at(cfg, it, ipe)
            step.set_lr(lr)
            loss, out = step(x, y)
            loss_sum += loss * y.shape[0]
            correct += (out.argmax(1) == y).sum()
            seen += y.shape[0]
            for hook in iteration_hooks:
                hook.on_iteration(ctx, it)
            if bar.enabled:  # a host sync, only when progress is shown
                bar.update(1, **({"loss": f"{float(loss):.3f}"} if i % 10 == 0 else {}))
        bar.close()
        totals = ctx.sum(torch.stack([loss_sum.float(), correct.float(),
                                      torch.tensor(float(seen), device=device)])).tolist()
        synchronize(device)
        train_time += time.perf_counter() - t0

        # --- epoch hooks: evaluation and guard timed separately -------------------------------------
        t1 = time.perf_counter()
        ctx.broadcast_buffers(model)  # BatchNorm statistics were kept per process
        record = {"epoch": epoch + 1, "lr": lr, "loss": totals[0] / totals[2], "train_acc": totals[1] / totals[2]}
        for hook in all_epoch_hooks:
            if hook.on_epoch_end(ctx, epoch, record) == "stop" and not stopped:
                stopped = record.get("stopped") or f"stopped by {type(hook).__name__} after epoch {epoch + 1}"
                record["stopped"] = stopped
        synchronize(device)
        eval_time += time.perf_counter() - t1
        record.update(train_time=round(train_time, 3), eval_time=round(eval_time, 3), eval_split=eval_split)
        history.append(record)
        if say:
            say(f"{label} " + _format_record(record))
        if run is not None and ctx.is_primary:
            run.log(record)
            hook_states = {_hook_key(i, h): h.state_dict() for i, h in enumerate(step_hooks + list(epoch_hooks))}
            save_checkpoint(ckpt_path, model, opt, describe=describe, mask=mask, history=history, epoch=epoch + 1,
                            train_time=train_time, eval_time=eval_time, stopped=stopped, guard_best=guard.best if guard else None,
                            hooks=hook_states, data_spec=spec.to_dict() if spec is not None else None)
    if rewind is not None and rewind.state is None:
        raise TrainingError(f"rewind_iteration={rewind_iteration} is beyond the {cfg.epochs * ipe} iterations "
                            "of this run")
    ctx.barrier()  # no process returns (and starts writing results) before the last checkpoint is on disk
    return TrainResult(history=history, train_time=train_time, eval_time=eval_time, stopped=stopped,
                       rewind_state=rewind.state if rewind else None, eval_split=eval_split, settings=settings)


def _format_record(r: dict) -> str:
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.3f}", f"train {r['train_acc']:.3f}",
             f"clean {r['eval_clean']:.3f}"]
    if "eval_pgd" in r:
        parts.append(f"pgd {r['eval_pgd']:.3f}")
    parts.append(f"lr {r['lr']:.4f}")
    parts.append(f"time {r['train_time']:.1f}s (+{r['eval_time']:.1f}s eval)")
    return " | ".join(parts)


__all__ = ["train", "TrainResult", "TrainingError", "MaskEnforcer", "RewindCapture", "Evaluation", "OverfitGuard",
           "seed_everything", "lr_at"]
