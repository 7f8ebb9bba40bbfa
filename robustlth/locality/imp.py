"""IMP on a fully connected network, per layer, with the output layer dense, rewinding and the locality
paper's stopping rule. Each round is a stage on disk (mask, trained weights, summary); an interrupted run
resumes at the round (and epoch) where it stopped."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from ..config import AttackConfig, ModelConfig, TrainConfig
from ..data import Dataset, as_float
from ..evaluate import predict
from ..models import build_model
from ..pruning.masks import Mask, dense_mask, full_mask, output_layer, prunable_weights, sparsity_report
from ..pruning.strategies import Layerwise
from ..pruning.ticket import Ticket, load_ticket, save_ticket
from ..runs import RunDir, atomic_torch_save
from ..training import seed_everything, train
from ..training.checkpoint import load_state_file
from .analysis import locality_scores
from .config import LocalityConfig


def first_layer(model: nn.Module) -> str:
    return next(iter(prunable_weights(model)))


def connected_fractions(model: nn.Module, mask: Mask) -> dict[str, float]:
    """For each pruned layer (all but the output layer): the fraction of its units with at least one surviving
    input and at least one surviving output connection."""
    names = list(prunable_weights(model))
    out = {}
    for name, nxt in zip(names[:-1], names[1:]):
        fed = mask[name].flatten(1).any(1)
        feeds = mask[nxt].any(0)
        if feeds.numel() != fed.numel():
            raise ValueError(f"{name} has {fed.numel()} units but {nxt} has {feeds.numel()} inputs: not a chain of "
                             "linear layers")
        out[name] = float((fed & feeds).float().mean())
    return out


def stop_reason(model: nn.Module, mask: Mask, threshold: float) -> Optional[str]:
    """Why IMP stops at this mask (a pruned layer has at most `threshold` of its units connected), or None."""
    for name, frac in connected_fractions(model, mask).items():
        if frac <= threshold:
            return f"{name} has {frac:.1%} of its units connected (<= {threshold:.0%})"
    return None


def layer_densities(mask: Mask) -> dict[str, float]:
    return {n: v["density"] for n, v in sparsity_report(mask)["layers"].items()}


def test_set_accuracy(model: nn.Module, data: Dataset, device: torch.device) -> float:
    x, y = as_float(data.test, device)
    flags, _ = predict(model, x, y)
    return float(flags.float().mean())


def train_mask(model: nn.Module, start: dict, mask: Optional[Mask], data: Dataset, cfg: TrainConfig,
               device: torch.device, rdir: RunDir, radius: int, rewind_iteration: Optional[int] = None,
               augment: bool = False, log: Optional[Callable[[str], None]] = None) -> dict:
    """Train `mask` (None: dense) from `start` in place, keep the weights in `rdir`/trained.pt and return the
    summary: validation accuracy after the last epoch, test accuracy, densities, connectivity, locality."""
    model.load_state_dict(start)
    result = train(model, data, cfg, AttackConfig(), device, run=rdir,
                   mask=full_mask(model, mask) if mask is not None else None, rewind_iteration=rewind_iteration,
                   augment=augment, log=log)
    atomic_torch_save(rdir.file("trained.pt"), {k: v.detach().cpu() for k, v in model.state_dict().items()})
    rdir.file("checkpoint.pt").unlink(missing_ok=True)  # trained.pt holds the weights; the optimiser is not needed
    mask = mask if mask is not None else dense_mask(model)
    hidden = {n: m for n, m in mask.items() if n != output_layer(model)}
    last = result.final
    return {"density": sparsity_report(hidden)["density"],
            "first_layer_density": layer_densities(mask)[first_layer(model)],
            "val_acc": last["eval_clean"], "val_loss": last["eval_loss"], "train_acc": last["train_acc"],
            "test_acc": test_set_accuracy(model, data, device), "train_time": result.train_time,
            "eval_split": result.eval_split,
            **{f"connected_{i + 1}": f for i, f in enumerate(connected_fractions(model, mask).values())},
            **locality_scores(mask[first_layer(model)], radius)}


def run_imp(model_cfg: ModelConfig, cfg: TrainConfig, loc: LocalityConfig, data: Dataset, run: RunDir,
            device: torch.device, augment: bool = False, log: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Round 0 trains the dense network (and keeps θk); round r > 0 trains the mask left by round r − 1 from
    θk. After each round, prune `loc.ratio` of each hidden layer's remaining weights by magnitude; stop when
    the stopping rule holds for the new mask or after `loc.max_rounds` pruned rounds. Returns one summary per
    trained round; the last one says why IMP stopped."""
    seed_everything(cfg.seed)
    model = build_model(model_cfg.model, model_cfg.width, data.spec).to(device)
    start, mask = {k: v.clone() for k, v in model.state_dict().items()}, None
    strategy = Layerwise(output_rate=0.0)
    rounds: list[dict] = []
    for r in range(loc.max_rounds + 1):
        rdir = RunDir(run.path / f"round_{r}")
        if r > 0:
            ticket = load_ticket(rdir.file("ticket.pt"))  # written by round r - 1
            mask, start = ticket.mask, ticket.state_dict
        if rdir.file("summary.json").exists():
            summary = rdir.read_json("summary.json")
        else:
            summary = {"round": r, **train_mask(model, start, mask, data, cfg, device, rdir, loc.radius,
                                                loc.rewind_iteration if r == 0 else None, augment, log)}
            mask = mask if mask is not None else dense_mask(model)
            nxt = strategy.prune(model, mask, loc.ratio)
            summary["stopped"] = stop_reason(model, nxt, loc.stop_units) or (
                f"max_rounds={loc.max_rounds} reached" if r == loc.max_rounds else None)
            if summary["stopped"] is None:
                rewind = load_state_file(run.path / "round_0" / "rewind.pt", "rewind state")
                save_ticket(RunDir(run.path / f"round_{r + 1}").file("ticket.pt"),
                            Ticket(nxt, rewind, {"model": model_cfg.model, "width": model_cfg.width, "round": r + 1}))
            rdir.write_json("summary.json", summary)
            if log:
                log(f"round {r}: density {summary['density']:.4f}, val acc {summary['val_acc']:.4f}, "
                    f"locality S_sc {summary['locality_sc']:.3f}" + (f"; stop: {summary['stopped']}"
                                                                     if summary["stopped"] else ""))
        rounds.append(summary)
        if summary["stopped"]:
            break
    return rounds


def best_round(rounds: list[dict]) -> dict:
    """The round with the best validation accuracy (ties: the sparser one)."""
    return max(rounds, key=lambda s: (s["val_acc"], s["round"]))
