"""The training engine: natural, FGSM, FGSM-RS, N-FGSM and PGD training of dense or masked networks.

Per epoch it logs loss, train accuracy, LR, clean and PGD accuracy on a fixed evaluation subset, and the
cumulative training wall-clock (evaluation timed separately), so time-to-accuracy curves can be drawn.
With a run directory it checkpoints every epoch (atomically, RNG states included) and resumes exactly.
"""
from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attacks import PGD, training_attack
from ..config import AttackConfig, TrainConfig
from ..data import Dataset, TrainLoader, as_float
from ..device import (memory_format, resolve_channels_last, resolve_cuda_graphs, resolve_precision,
                      synchronize, tune_for_static_shapes)
from ..errors import RobustLTHError
from ..evaluate import predict, robust_flags
from ..runs import RunDir, atomic_torch_save
from .hooks import StepHook
from .checkpoint import load_checkpoint, load_state_file, save_checkpoint
from .schedules import lr_at, scaled_for_batch
from .steps import make_step

Mask = dict[str, torch.Tensor]
SINGLE_STEP = ("fgsm", "fgsm_rs", "nfgsm")
GUARD_IMAGES = 256
GUARD_DROP = 0.2  # an absolute drop of PGD accuracy on the guard batch that counts as catastrophic overfitting


class TrainingError(RobustLTHError, RuntimeError):
    pass


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


class MaskEnforcer:
    """Keeps masked entries exactly zero: gradients are masked before the step (so momentum and weight
    decay never see them) and weights after it."""

    def __init__(self, model: nn.Module, mask: Optional[Mask]):
        params = dict(model.named_parameters())
        self.params: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        for name, m in (mask or {}).items():
            if name not in params:
                raise TrainingError(f"mask entry {name!r} is not a parameter of this model; the mask was made "
                                    "for a different architecture")
            if tuple(m.shape) != tuple(params[name].shape):
                raise TrainingError(f"mask entry {name!r} has shape {tuple(m.shape)}, the parameter has "
                                    f"{tuple(params[name].shape)}: the mask was made for another model or width")
            self.params.append(params[name])
            self.masks.append(m.to(device=params[name].device, dtype=params[name].dtype))
        self.apply_to_weights()

    def __bool__(self) -> bool:
        return bool(self.params)

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.masks)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        grads, masks = [], []
        for p, m in zip(self.params, self.masks):
            if p.grad is not None:
                grads.append(p.grad)
                masks.append(m)
        if grads:
            torch._foreach_mul_(grads, masks)


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, attack_cfg: AttackConfig, device: torch.device,
          run: Optional[RunDir] = None, mask: Optional[Mask] = None, rewind_iteration: Optional[int] = None,
          augment: bool = True, progress: bool = False, log: Optional[Callable[[str], None]] = None,
          step_hooks: Sequence[StepHook] = ()) -> TrainResult:
    """Train `model` in place. Returns the per-epoch history and the wall-clock split.

    `rewind_iteration=k` also returns the weights after k optimiser steps (k = 0: the initial weights), for
    IMP with rewinding; with a run directory they are kept on disk so a resumed run still has them.
    """
    cfg = scaled_for_batch(cfg)
    precision = resolve_precision(device, cfg.precision)
    channels_last = resolve_channels_last(device, cfg.channels_last)
    cuda_graphs = resolve_cuda_graphs(device, cfg.cuda_graphs, precision, cfg.compile)
    settings = {"precision": precision, "channels_last": channels_last, "cuda_graphs": cuda_graphs,
                "lr": cfg.lr, "warmup_epochs": cfg.warmup_epochs}
    fmt = memory_format(channels_last)
    tune_for_static_shapes(device)
    model.to(device=device, memory_format=fmt)
    enforcer = MaskEnforcer(model, mask)
    step_model = torch.compile(model) if cfg.compile else model
    attack = training_attack(attack_cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if (precision == "fp16" and device.type == "cuda") else None

    step = make_step(step_model, opt, attack, enforcer, device, precision, scaler, cuda_graphs, step_hooks)
    loader = TrainLoader(data.train, cfg.batch_size, device, cfg.seed, augment, fmt)
    ipe = len(loader)
    eval_split = "val" if data.val is not None else "test"
    x_eval, y_eval = as_float(data.val if data.val is not None else data.test, device, cfg.eval_n)
    eval_attack = PGD(attack_cfg.eps, steps=cfg.eval_steps) if cfg.eval_steps else None
    guard_on = cfg.guard and attack_cfg.attack in SINGLE_STEP
    x_guard, y_guard = as_float(data.train, device, GUARD_IMAGES)
    guard_attack = PGD(attack_cfg.eps, steps=10)

    # --- resume ------------------------------------------------------------------------------------
    history: list[dict] = []
    start_epoch, train_time, eval_time, stopped, guard_best = 0, 0.0, 0.0, None, None
    rewind_state = None
    ckpt_path = run.file("checkpoint.pt") if run else None
    rewind_path = run.file("rewind.pt") if run else None
    if run is not None:
        run.remove_stale_tmp()  # a kill inside a checkpoint write leaves its temporary file
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, model, opt)
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        train_time, eval_time, stopped, guard_best = ckpt["train_time"], ckpt["eval_time"], ckpt["stopped"], \
            ckpt["guard_best"]
        for hook, state in zip(step_hooks, ckpt["hooks"]):
            hook.load_state_dict(state)
    else:
        seed_everything(cfg.seed)
    if run is not None:
        run.rewrite_metrics(history)  # lines logged after the last checkpoint would otherwise repeat
    if rewind_iteration is not None:
        if rewind_path is not None and rewind_path.exists():
            rewind_state = load_state_file(rewind_path, "rewind state")
        elif start_epoch * ipe >= max(rewind_iteration, 1):
            raise TrainingError("cannot rewind: the run was resumed past the rewind point and rewind.pt is missing")
        elif rewind_iteration == 0:
            rewind_state = _state_copy(model)
            if rewind_path is not None:
                atomic_torch_save(rewind_path, rewind_state)
    if start_epoch and log:  # said once everything the run resumes from has loaded
        log(f"resuming {run.path} from epoch {start_epoch} of {cfg.epochs}")

    eval_gen = torch.Generator(device=device)
    last_good = _state_copy(model) if guard_on else None
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
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(batches, total=ipe, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr)
            batches = bar
        for i, (x, y) in enumerate(batches):
            it = epoch * ipe + i
            lr = lr_at(cfg, it, ipe)
            step.set_lr(lr)
            loss, out = step(x, y)
            loss_sum += loss * y.shape[0]
            correct += (out.argmax(1) == y).sum()
            seen += y.shape[0]
            for hook in step_hooks:
                hook.on_iteration(None, it + 1)
            if rewind_iteration is not None and rewind_state is None and it + 1 == rewind_iteration:
                rewind_state = _state_copy(model)
                if rewind_path is not None:
                    atomic_torch_save(rewind_path, rewind_state)
            if bar is not None and i % 10 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}", acc=f"{float(correct) / seen:.3f}")
        synchronize(device)
        train_time += time.perf_counter() - t0

        # --- per-epoch evaluation (timed separately) --------------------------------------------------
        t1 = time.perf_counter()
        eval_gen.manual_seed(cfg.seed + 7)  # the same random starts every epoch
        flags, eval_loss = predict(model, x_eval, y_eval, precision=precision)
        record = {"epoch": epoch + 1, "lr": lr, "loss": float(loss_sum) / seen, "train_acc": float(correct) / seen,
                  "eval_clean": float(flags.float().mean()), "eval_loss": float(eval_loss) / len(y_eval)}
        if eval_attack is not None:
            record["eval_pgd"] = float(robust_flags(model, eval_attack, x_eval, y_eval, generator=eval_gen,
                                                    precision=precision).float().mean())
        if guard_on:
            guard_acc = float(robust_flags(model, guard_attack, x_guard, y_guard, generator=eval_gen,
                                           precision=precision).float().mean())
            record["guard_pgd"] = guard_acc
            if guard_best is not None and guard_acc < guard_best - GUARD_DROP:
                model.load_state_dict(last_good)
                stopped = (f"catastrophic overfitting at epoch {epoch + 1}: PGD-10 accuracy on a training batch fell "
                           f"from {guard_best:.3f} to {guard_acc:.3f}; rolled back to epoch {epoch} and stopped")
                record.update(stopped=stopped, rolled_back=True)
                if log:
                    log(stopped)
            else:
                guard_best = guard_acc if guard_best is None else max(guard_best, guard_acc)
                last_good = _state_copy(model)
        synchronize(device)
        eval_time += time.perf_counter() - t1
        record.update(train_time=round(train_time, 3), eval_time=round(eval_time, 3), eval_split=eval_split)
        history.append(record)
        if log:
            log(_format_record(record))
        if run is not None:
            run.log(record)
            save_checkpoint(ckpt_path, model, opt, history=history, epoch=epoch + 1, train_time=train_time,
                            eval_time=eval_time, stopped=stopped, guard_best=guard_best,
                            hooks=[hook.state_dict() for hook in step_hooks])
    if rewind_iteration is not None and rewind_state is None:
        raise TrainingError(f"rewind_iteration={rewind_iteration} is beyond the {cfg.epochs * ipe} iterations "
                            "of this run")
    return TrainResult(history=history, train_time=train_time, eval_time=eval_time, stopped=stopped,
                       rewind_state=rewind_state, eval_split=eval_split, settings=settings)


def _format_record(r: dict) -> str:
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.3f}", f"train {r['train_acc']:.3f}",
             f"clean {r['eval_clean']:.3f}"]
    if "eval_pgd" in r:
        parts.append(f"pgd {r['eval_pgd']:.3f}")
    parts.append(f"lr {r['lr']:.4f}")
    parts.append(f"time {r['train_time']:.1f}s (+{r['eval_time']:.1f}s eval)")
    return " | ".join(parts)


__all__ = ["train", "TrainResult", "TrainingError", "MaskEnforcer", "seed_everything", "lr_at"]
