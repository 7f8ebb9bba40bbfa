"""Learning-rate schedules as pure functions of the iteration, so a resumed run needs no scheduler state."""
from __future__ import annotations

from ..config import TrainConfig


def lr_at(cfg: TrainConfig, iteration: int, iters_per_epoch: int) -> float:
    """The learning rate for `iteration` (0-based) of a run of `cfg.epochs` epochs.

    constant: cfg.lr. step: cfg.lr times gamma for each milestone (fraction of the budget) passed.
    onecycle: linear 0 -> lr over the first 40 % of the budget, then linear to 0 (fast AT).
    A linear warm-up from warmup_start_lr to the scheduled value covers the first warmup_epochs.
    """
    e = iteration / iters_per_epoch
    if cfg.schedule == "onecycle":
        peak = 0.4 * cfg.epochs
        lr = cfg.lr * (e / peak if e < peak else max(0.0, (cfg.epochs - e) / (cfg.epochs - peak)))
    else:
        lr = cfg.lr
        if cfg.schedule == "step":
            lr *= cfg.gamma ** sum(e >= m * cfg.epochs for m in cfg.milestones)
    if cfg.warmup_epochs and e < cfg.warmup_epochs:
        lr = cfg.warmup_start_lr + (lr - cfg.warmup_start_lr) * e / cfg.warmup_epochs
    return lr
