"""Learning-rate schedules as pure functions of the iteration, so a resumed run needs no scheduler state."""
from __future__ import annotations

from ..config import TrainConfig

LARGE_BATCH_WARMUP_EPOCHS = 5  # Goyal et al.'s gradual warm-up, capped at a tenth of short budgets


def scaled_for_batch(cfg: TrainConfig) -> TrainConfig:
    """The config with its LRs scaled linearly from `lr_reference_batch` to `batch_size` (Goyal et al.).

    `lr` (and a warm-up's start) are read as values at the reference batch. When the LR is scaled up and
    no warm-up was asked for, a linear warm-up from the reference LR covers min(5, epochs / 10) epochs.
    """
    if cfg.lr_reference_batch is None or cfg.batch_size == cfg.lr_reference_batch:
        return cfg
    k = cfg.batch_size / cfg.lr_reference_batch
    changes = {"lr": cfg.lr * k, "warmup_start_lr": cfg.warmup_start_lr * k, "lr_reference_batch": None}
    if k > 1 and not cfg.warmup_epochs:
        changes.update(warmup_epochs=min(LARGE_BATCH_WARMUP_EPOCHS, cfg.epochs / 10), warmup_start_lr=cfg.lr)
    return cfg.replace(**changes)


def lr_at(cfg: TrainConfig, iteration: int, iters_per_epoch: int) -> float:
    """The learning rate for `iteration` (0-based) of a run of `cfg.epochs` epochs (after `scaled_for_batch`).

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
