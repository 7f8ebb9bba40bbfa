"""`robustlth locality`: IMP on the FCN, the controls, the analysis of the round with the best validation
accuracy, and the report. Every training is a stage on disk, so a second call only re-renders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import ConfigError, DataConfig, ModelConfig, TrainConfig, config_hash
from ..data import Dataset, load_dataset
from ..models import build_model
from ..pruning.masks import Mask, dense_mask
from ..pruning.strategies import Layerwise, RandomPruning
from ..pruning.ticket import Ticket, load_ticket, save_ticket
from ..runs import RunDir, environment
from ..training.checkpoint import load_state_file
from .config import LocalityConfig
from .controls import merge_labels, train_fraction
from .imp import best_round, first_layer, run_imp, train_mask
from .removal import removal_accuracy

IMP_FIELDS = ("ratio", "max_rounds", "stop_units", "rewind_iteration")


def imp_run(data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig, loc: LocalityConfig, data: Dataset,
            control: dict, root: str | Path, device: torch.device, log=None) -> tuple[list[dict], RunDir]:
    """One IMP run in its own directory, keyed by what it depends on (so runs that differ only in the analysis
    or in which controls they add share it)."""
    imp = {k: getattr(loc, k) for k in IMP_FIELDS}
    sections = {"data": data_cfg, "model": model_cfg, "train": cfg, "imp": imp, "control": control}
    config = {"data": data_cfg.to_dict(), "model": model_cfg.to_dict(), "train": cfg.to_dict(), "imp": imp,
              "control": control}
    run = RunDir.create(root, "locality-imp", config_hash("locality-imp", sections), config, device, cfg.seed)
    if log:
        log(f"IMP run {run.path} ({control or 'original data'})")
    return run_imp(model_cfg, cfg, loc, data, run, device, data_cfg.augment, log), run


def check_rewind(loc: LocalityConfig, cfg: TrainConfig, n_train: int) -> None:
    """Fail before any training when a round has fewer steps than the rewind point (the data control gets as
    many steps as the main run)."""
    steps = cfg.epochs * steps_per_epoch(cfg, n_train)
    if loc.rewind_iteration > steps:
        raise ConfigError(f"invalid rewind_iteration={loc.rewind_iteration}: expected at most the {steps} steps of a "
                          f"round ({cfg.epochs} epochs of {n_train} images in batches of {cfg.batch_size})")


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    return n_train // min(cfg.batch_size, n_train)  # the loader drops the last partial batch


def same_steps(cfg: TrainConfig, n_full: int, n_sub: int) -> TrainConfig:
    """Epochs for a smaller training set such that a round takes at least as many SGD steps as on the full one,
    so the data control differs in the data, not in the amount of training."""
    return cfg.replace(epochs=-(-cfg.epochs * steps_per_epoch(cfg, n_full) // steps_per_epoch(cfg, n_sub)))


def _mask_of(imp_dir: RunDir, r: int, model) -> Mask:
    return dense_mask(model) if r == 0 else load_ticket(imp_dir.path / f"round_{r}" / "ticket.pt").mask


def _arm(model, mask: Mask, summary: dict, rdir: RunDir, data: Dataset, loc: LocalityConfig, device) -> dict:
    """An analysed arm: its first-layer mask, summary and unit-removal accuracies (weights from rdir; none for
    the dense network, whose units all tie in in-degree)."""
    model.load_state_dict(load_state_file(rdir.file("trained.pt"), "trained state"))
    first = mask[first_layer(model)].cpu()
    return {"summary": summary, "first_mask": first,
            "removal": None if bool(first.all()) else removal_accuracy(model, mask, data, loc.remove_units)}


def _train_derived(name: str, run: RunDir, model, mask: Mask, start: dict, data: Dataset, cfg: TrainConfig,
                   loc: LocalityConfig, model_cfg: ModelConfig, device, augment: bool, log) -> dict:
    """Train a derived mask (one-shot or random) once, from θk, in the IMP run's directory <name>/."""
    rdir = RunDir(run.path / name)
    if rdir.file("summary.json").exists():
        return rdir.read_json("summary.json")
    if log:
        log(f"training the {name} mask")
    summary = {"round": None, **train_mask(model, start, mask, data, cfg, device, rdir, loc.radius,
                                           augment=augment, log=log)}
    save_ticket(rdir.file("ticket.pt"), Ticket(mask, start, {"model": model_cfg.model, "width": model_cfg.width,
                                                            "control": name}))
    rdir.write_json("summary.json", summary)
    return summary


def derived_masks(model, imp_dir: RunDir, best: int, best_mask: Mask, loc: LocalityConfig,
                  seed: int) -> dict[str, Mask]:
    """The controls at the analysed round's sparsity: one-shot pruning of the trained dense network, and a random
    mask with the same per-layer counts."""
    if best == 0:
        return {}
    dense, out = dense_mask(model), {}
    if loc.oneshot:
        model.load_state_dict(load_state_file(imp_dir.path / "round_0" / "trained.pt", "trained state"))
        out["oneshot"] = Layerwise(output_rate=0.0).prune(model, dense, 1 - (1 - loc.ratio) ** best)
    if loc.random_mask:
        out["random"] = RandomPruning(seed, "layerwise").match(dense, best_mask)
    return out


def run_locality(data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig, loc: LocalityConfig,
                 device: torch.device, root: str | Path = "runs", preset: Optional[str] = None,
                 log: Optional[Callable[[str], None]] = None) -> tuple[dict, RunDir]:
    sections = {"data": data_cfg, "model": model_cfg, "train": cfg, "locality": loc}
    config = {k: v.to_dict() for k, v in sections.items()} | {"preset": preset}
    data = load_dataset(data_cfg)
    check_rewind(loc, cfg, len(data.train))
    run = RunDir.create(root, "locality", config_hash("locality", sections), config, device, cfg.seed)
    rounds, imp_dir = imp_run(data_cfg, model_cfg, cfg, loc, data, {}, root, device, log)
    best = best_round(rounds)["round"]
    model = build_model(model_cfg.model, model_cfg.width, data.spec)
    masks = {"imp": _mask_of(imp_dir, best, model), "dense": dense_mask(model)}
    summaries = {"imp": rounds[best], "dense": rounds[0]}
    stage_dirs = {"imp": imp_dir.path / f"round_{best}", "dense": imp_dir.path / "round_0"}
    rewind = load_state_file(imp_dir.path / "round_0" / "rewind.pt", "rewind state")
    for name, mask in derived_masks(model, imp_dir, best, masks["imp"], loc, cfg.seed).items():
        masks[name] = mask
        summaries[name] = _train_derived(name, imp_dir, model, mask, rewind, data, cfg, loc, model_cfg, device,
                                         data_cfg.augment, log)
        stage_dirs[name] = imp_dir.path / name
    model.to(device)
    arms = {k: _arm(model, masks[k], summaries[k], RunDir(stage_dirs[k]), data, loc, device) for k in masks}

    controls = {}
    if loc.data_fraction:
        sub = train_fraction(data, loc.data_fraction, data_cfg.data_seed)
        controls[f"data_{loc.data_fraction:g}"] = imp_run(
            data_cfg, model_cfg, same_steps(cfg, len(data.train), len(sub.train)), loc, sub,
            {"data_fraction": loc.data_fraction}, root, device, log)[0]
    if loc.superclasses:
        merged = merge_labels(data, loc.superclasses, loc.label_seed)
        controls[f"superclasses_{loc.superclasses}"] = imp_run(
            data_cfg, model_cfg, cfg, loc, merged, {"superclasses": loc.superclasses, "label_seed": loc.label_seed},
            root, device, log)[0]

    trained = rounds + [summaries[k] for k in ("oneshot", "random") if k in summaries] + \
        [s for c in controls.values() for s in c]
    results = {"config": config, "imp_dir": str(imp_dir.path), "rounds": rounds, "best_round": best,
               "n_train": len(data.train), "n_val": len(data.val) if data.val is not None else 0,
               "n_test": len(data.test),
               "arms": {k: {"summary": a["summary"], "removal": a["removal"]} for k, a in arms.items()},
               "controls": {k: {"rounds": v, "best_round": best_round(v)["round"]} for k, v in controls.items()},
               "train_time_s": sum(s["train_time"] for s in trained), "environment": environment(device)}
    run.write_json("results.json", results)
    from .report import write_report
    write_report(results, {k: a["first_mask"] for k, a in arms.items()}, run.path, loc)
    return results, run
