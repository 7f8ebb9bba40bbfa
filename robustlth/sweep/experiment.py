"""`robustlth sparsity-sweep`: per seed, the dense network, an IMP ticket (reset to θ0) at each sparsity in
turn, a random ticket, and RST's transformation of that same random ticket, all fine-tuned alike. Each
trained network and each RST search is a stage on disk, so an interrupted sweep resumes where it stopped."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import AttackConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig, config_hash
from ..data import Dataset, as_float, load_dataset
from ..evaluate import predict
from ..models import build_model
from ..pruning import (TRANSFORM_DEFAULTS, RSTConfig, SearchSpec, Ticket, count, dense_mask, find_ticket,
                       load_ticket, prunable_weights, random_pick, save_ticket, ticket_model)
from ..pruning.rst import end_layers
from ..pruning.strategies import GlobalMagnitude
from ..runs import RunDir, atomic_torch_save, environment
from ..safety import safe_torch_load
from ..training import seed_everything, train
from .config import SweepConfig

Log = Optional[Callable[[str], None]]


@dataclasses.dataclass
class Context:
    cfg: SweepConfig
    data_cfg: DataConfig
    model_cfg: ModelConfig
    train: TrainConfig
    data: Dataset
    device: torch.device
    log: Log


def layer_sparsity(model: torch.nn.Module, sparsity: float, dense_layers: list[str]) -> float:
    """The sparsity of the pruned layers that gives `sparsity` overall when `dense_layers` stay dense."""
    sizes = {n: w.numel() for n, w in prunable_weights(model).items()}
    pruned = sum(v for n, v in sizes.items() if n not in dense_layers)
    return min(sparsity * sum(sizes.values()) / pruned, 1 - 1 / pruned)


def run_sweep(cfg: SweepConfig, data_cfg: DataConfig, model_cfg: ModelConfig, train_cfg: TrainConfig,
              device: torch.device, root: str | Path = "runs", preset: Optional[str] = None,
              log: Log = None) -> tuple[dict, RunDir]:
    data = load_dataset(data_cfg)  # bad data fails before anything is written
    config = {"preset": preset, "sweep": cfg.to_dict(), "data": data_cfg.to_dict(), "model": model_cfg.to_dict(),
              "train": train_cfg.to_dict()}
    run = RunDir.create(root, "sweep", config_hash("sweep", {"sweep": cfg, "data": data_cfg, "model": model_cfg,
                                                             "train": train_cfg}), config, device)
    ctx = Context(cfg, data_cfg, model_cfg, train_cfg, data, device, log)
    with run.lock():
        rows = []
        for seed in cfg.seeds:
            rows += seed_series(ctx, seed, run.path / f"seed_{seed}")
        from .report import write_report
        results = {"config": config, "environment": environment(device), "rows": rows}
        results["summary"] = write_report(results, run.path)
    return results, run


def seed_series(ctx: Context, seed: int, root: Path) -> list[dict]:
    cfg, m = ctx.cfg, ctx.model_cfg
    seed_everything(seed)
    model = build_model(m.model, m.width, ctx.data.spec)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {"model": m.model, "width": m.width, "data_spec": ctx.data.spec.to_dict()}
    dense_layers = list(end_layers(model)) if cfg.ends_dense else []
    rows = []

    def record(method: str, target: float, row: dict) -> None:
        rows.append({"method": method, "seed": seed, "target_sparsity": target, **row})
        if ctx.log:
            ctx.log(f"seed {seed} {method} at {target:.0%}: sparsity {row['sparsity']:.4f}, "
                    f"test acc {row['test_acc']:.4f}")

    if {"dense", "imp"} & set(cfg.methods):
        row, trained = train_ticket(ctx, Ticket(dense_mask(model), theta0, meta), root / "dense", seed)
        if "dense" in cfg.methods:
            record("dense", 0.0, row)
    if "imp" in cfg.methods:  # IMP through the sparsities in order: each ticket pruned from the last one trained
        mask, previous = dense_mask(model), 0.0
        for s in cfg.sparsities:
            path = root / f"imp_{s:g}" / "ticket.pt"
            if not path.exists():
                model.load_state_dict(trained)
                pruned = GlobalMagnitude().prune(model, mask, 1 - (1 - s) / (1 - previous))
                save_ticket(path, Ticket(pruned, theta0, {**meta, "strategy": "global", "sparsity": s}))
            ticket = load_ticket(path)
            row, trained = train_ticket(ctx, ticket, path.parent, seed)
            record("imp", s, row)
            mask, previous = ticket.mask, s
    for s in cfg.sparsities:
        ratio = layer_sparsity(model, s, dense_layers)
        if "random" in cfg.methods:  # the same pick as the RST arm's (same seed), without the transformation
            mask = random_pick(model, None, 0.0, ratio, seed, dense_layers)
            record("random", s, train_ticket(ctx, Ticket(mask, theta0, meta), root / f"random_{s:g}", seed)[0])
        for method in ("rst", "rst-iter"):
            if method in cfg.methods:
                ticket, search = rst_ticket(ctx, method, ratio, dense_layers, seed, root / "searches")
                row = train_ticket(ctx, ticket, root / f"{method}_{s:g}", seed)[0]
                cycles = search.read_json("summary.json")["cycles"]
                record(method, s, {**row, "transform_time": ticket.meta["search_time"],
                                   "squeezed_rms_ratio": cycles[-1]["squeezed_rms_after"]
                                   / max(cycles[-1]["squeezed_rms_before"], 1e-12)})
    return rows


def rst_ticket(ctx: Context, method: str, ratio: float, dense_layers: list[str], seed: int, root: Path):
    cfg, t = ctx.cfg, ctx.train
    spec = SearchSpec(data=ctx.data_cfg, model=ctx.model_cfg,
                      search=TrainConfig(**{**TRANSFORM_DEFAULTS, "lr": cfg.rst_lr, "eval_n": t.eval_n,
                                            "precision": t.precision, "channels_last": t.channels_last,
                                            "cuda_graphs": t.cuda_graphs, "seed": seed}),
                      attack=AttackConfig(), prune=PruneConfig(ratio=ratio, prune_seed=seed, dense_layers=dense_layers),
                      rst=RSTConfig(method=method, iterations=cfg.rst_iterations, eta_max=cfg.rst_eta_max,
                                    ends_dense=False))
    return find_ticket(spec, ctx.device, root, data=ctx.data)


def train_ticket(ctx: Context, ticket: Ticket, adir: Path, seed: int) -> tuple[dict, dict]:
    """Fine-tune `ticket` (dense when its mask keeps everything); (result row, trained weights), cached."""
    run = RunDir(adir)
    if run.file("result.json").exists():
        return run.read_json("result.json"), safe_torch_load(run.file("trained.pt"), "trained weights")
    model = ticket_model(ticket)
    remaining, total = count(ticket.mask)
    result = train(model, ctx.data, ctx.train.replace(seed=seed), AttackConfig(), ctx.device, run=run,
                   mask=ticket.full_mask(model) if remaining < total else None, augment=ctx.data_cfg.augment)
    x, y = as_float(ctx.data.test, ctx.device)
    trained = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    row = {"sparsity": 1 - remaining / total, "test_acc": float(predict(model, x, y)[0].float().mean()),
           "val_acc": result.final["eval_clean"], "epoch1_val_acc": result.history[0]["eval_clean"],
           "train_time": result.train_time}
    atomic_torch_save(run.file("trained.pt"), trained)
    run.write_json("result.json", row)  # commits the stage
    run.file("checkpoint.pt").unlink(missing_ok=True)
    return row, trained
