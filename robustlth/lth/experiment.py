"""`robustlth lth`: per network and seed, IMP with the LTH paper's layer-wise rates and reset to θ0; every
round trains the ticket and its controls and records the early-stopping iteration and the test accuracy
there. Each trained network is a stage on disk (result.json, written after the next round's ticket), so an
interrupted experiment resumes where it stopped."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from ..attacks import PGD
from ..config import AttackConfig, ConfigError, DataConfig, TrainConfig, config_hash
from ..data import Dataset, Split, as_float, balanced_indices, load_dataset
from ..evaluate import predict, robust_flags
from ..models import build_model
from ..pruning.masks import count, dense_mask, output_layer, prunable_weights
from ..pruning.strategies import Layerwise, RandomPruning
from ..pruning.ticket import Ticket, load_ticket, save_ticket, ticket_data_spec, ticket_model
from ..runs import RunDir, environment
from ..training import train
from .config import LTHConfig
from .evaluator import EarlyStopEvaluator

Log = Optional[Callable[[str], None]]


def initial_state(model_name: str, width: float, seed: int, init: str, spec=None) -> dict:
    """θ0 of `model_name` for `seed` (and the data `spec`): Glorot normal weights and zero biases (the paper),
    or PyTorch's init."""
    torch.manual_seed(seed)
    model = build_model(model_name, width) if spec is None else build_model(model_name, width, spec)
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
class Context:
    """What every training of one experiment shares."""
    cfg: LTHConfig
    train: TrainConfig
    data_cfg: DataConfig
    data: Dataset
    device: torch.device
    log: Log


def run_lth(cfg: LTHConfig, data_cfg: DataConfig, train_cfg: TrainConfig, device: torch.device,
            root: str | Path = "runs", preset: Optional[str] = None, log: Log = None) -> tuple[dict, RunDir]:
    """Run (or resume) the experiment; returns the results (rows, summary) and the run directory."""
    data = load_dataset(data_cfg)  # bad data fails before anything is written
    if data.val is None:
        raise ConfigError("lth needs a validation split for the early-stopping iteration: set val_size "
                          "(e.g. --val-size 500)")
    if cfg.transfer and len(data.train) < 4 * train_cfg.batch_size:
        raise ConfigError(f"transfer halves of {len(data.train)} training images hold under two batches of "
                          f"{train_cfg.batch_size} each")
    config = {"preset": preset, "lth": cfg.to_dict(), "data": data_cfg.to_dict(), "train": train_cfg.to_dict()}
    run = RunDir.create(root, "lth", config_hash("lth", {"lth": cfg, "data": data_cfg, "train": train_cfg}),
                        config, device)
    ctx = Context(cfg, train_cfg, data_cfg, data, device, log)
    with run.lock():
        rows = []
        for model_name in cfg.models:
            for seed in cfg.seeds:
                rows += imp_series(ctx, model_name, seed, run.path / model_name / f"seed_{seed}")
        from .report import write_report
        results = {"config": config, "environment": environment(device), "rows": rows}
        results["summary"] = write_report(results, run.path)
    return results, run


def imp_series(ctx: Context, model_name: str, seed: int, root: Path) -> list[dict]:
    cfg = ctx.cfg
    spec = ctx.data.spec
    theta0 = initial_state(model_name, cfg.width, seed, cfg.init, spec)
    meta = {"model": model_name, "width": cfg.width, "data_spec": spec.to_dict()}
    source, other = halves(ctx.data, seed) if cfg.transfer else (ctx.data, None)
    model = build_model(model_name, cfg.width, spec)
    rates = layer_rates(model, cfg, model_name)
    rows = []
    for r in range(cfg.rounds + 1):
        rdir = root / f"round_{r}"
        ticket = load_ticket(rdir / "ticket.pt") if r > 0 else Ticket(dense_mask(model), theta0, meta)
        arms = {"ticket": (ticket, source)}
        if r > 0:
            if "reinit" in cfg.controls:
                arms["reinit"] = (_reinit(ticket, model_name, cfg, seed, r), source)
            if "random" in cfg.controls:
                mask = RandomPruning(seed * 1000 + r, "layerwise").match(dense_mask(model), ticket.mask)
                arms["random"] = (Ticket(mask, theta0, meta), source)
        if other is not None:
            arms["transfer"] = (ticket, other)
            if r > 0 and "reinit" in cfg.controls:
                arms["transfer_reinit"] = (arms["reinit"][0], other)
        for arm, (t, arm_data) in arms.items():
            prune_next = None
            if arm == "ticket" and r < cfg.rounds:
                prune_next = lambda trained, t=t, nxt=root / f"round_{r + 1}" / "ticket.pt": save_ticket(  # noqa: E731
                    nxt, Ticket(Layerwise(rates=rates).prune(trained, t.mask, 0.0), theta0, meta))
            row = train_arm(ctx, t, arm_data, rdir / arm, seed, prune_next)
            rows.append({"model": model_name, "seed": seed, "round": r, "arm": arm, **row})
            if ctx.log:
                ctx.log(f"{model_name} seed {seed} round {r} {arm}: {row['remaining_pct']:.1f} % of weights, "
                        f"early stop at iteration {row['early_stop_iteration']}, test acc {row['test_acc']:.4f}")
    return rows


def _reinit(ticket: Ticket, model_name: str, cfg: LTHConfig, seed: int, r: int) -> Ticket:
    state = initial_state(model_name, cfg.width, 10_000 + seed * 1000 + r, cfg.init, ticket_data_spec(ticket))
    return Ticket(dict(ticket.mask), state, {**ticket.meta, "control": "reinit"})


def train_arm(ctx: Context, ticket: Ticket, data: Dataset, adir: Path, seed: int,
              on_trained: Optional[Callable[[nn.Module], None]] = None) -> dict:
    """Train `ticket` on `data` with the early-stopping evaluator; the result row (cached in result.json)."""
    run = RunDir(adir)
    if run.file("result.json").exists():
        return run.read_json("result.json")
    model = ticket_model(ticket)
    remaining, total = count(ticket.mask)
    x_val, y_val = as_float(ctx.data.val, ctx.device)
    hook = EarlyStopEvaluator(model, x_val, y_val, ctx.cfg.eval_every)
    cfg = ctx.train.replace(seed=seed)
    result = train(model, data, cfg, AttackConfig(), ctx.device, run=run,
                   mask=ticket.full_mask(model) if remaining < total else None, augment=ctx.data_cfg.augment,
                   log=None, step_hooks=[hook])
    iterations = cfg.epochs * (len(data.train) // min(cfg.batch_size, len(data.train)))
    hook.finish(iterations)
    if on_trained is not None:
        on_trained(model)
    x_test, y_test = as_float(ctx.data.test, ctx.device)
    final_acc = float(predict(model, x_test, y_test)[0].float().mean())
    model.load_state_dict(hook.best_state)  # the early-stopped network
    best = hook.best()
    row = {"remaining_pct": 100 * remaining / total, "early_stop_iteration": hook.best_iteration,
           "iterations": iterations, "val_loss": best["val_loss"], "val_acc": best["val_acc"],
           "test_acc": float(predict(model, x_test, y_test)[0].float().mean()), "test_acc_final": final_acc,
           "train_time": result.train_time, "train_images": len(data.train)}
    for eps in ctx.cfg.robust_eps:
        x, y = as_float(ctx.data.test, ctx.device, ctx.cfg.robust_n)
        attack = PGD(eps, steps=ctx.cfg.robust_steps)
        gen = torch.Generator(device=ctx.device).manual_seed(seed)
        row[f"pgd_acc_eps{eps * 255:g}"] = float(robust_flags(model, attack, x, y, generator=gen).float().mean())
    run.write_json("curve.json", hook.records)
    run.write_json("result.json", row)  # commits the stage
    run.file("checkpoint.pt").unlink(missing_ok=True)  # the result holds what is needed; keep the run small
    return row
