"""RST and RST-Iter tickets as stages on disk: per cycle, a new random pick, the transformation (dense
training with the penalty on the weights the pick removes), then the mask, keeping the transformed survivors.
A cycle is done when its summary.json exists; an interrupted transformation resumes from its checkpoint (η
included), so the result is the same as an uninterrupted run's."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import ConfigError
from ..data import Dataset, load_dataset
from ..models import build_model
from ..runs import RunDir
from ..training import RunContext, seed_everything, train
from .masks import Mask, apply_mask, dense_mask, full_mask, sparsity_report
from .rst import RSTPenalty, cycle_sparsities, end_layers, penalized_weights, random_pick
from .search_checks import check_search
from .ticket import Ticket, commit_stage, load_ticket, save_ticket

Log = Optional[Callable[[str], None]]


def _rms(model: torch.nn.Module, which: Mask) -> float:
    """Root mean square of the weights `which` marks (0 when it marks none)."""
    params = dict(model.named_parameters())
    total = sum(float((params[n].detach()[m.to(params[n].device)].float() ** 2).sum()) for n, m in which.items())
    n = sum(int(m.sum()) for m in which.values())
    return math.sqrt(total / n) if n else 0.0


def check_rst(spec, model, data: Dataset) -> list[str]:
    """What an RST search can check before it trains; returns the layers left dense."""
    p = spec.prune
    if p.rounds != 1 or p.rewind_iteration:
        raise ConfigError(f"{spec.rst.method} takes no IMP rounds or rewinding (rounds={p.rounds}, "
                          f"rewind_iteration={p.rewind_iteration}); use --cycles with rst-iter")
    check_search(spec, model, data)
    dense = list(p.dense_layers)
    if spec.rst.keeps_ends_dense(spec.model.model):
        dense += [n for n in end_layers(model) if n not in dense]
    return dense


def find_rst_ticket(spec, device: torch.device, root: str | Path = "runs", data: Optional[Dataset] = None,
                    progress: bool = False, log: Log = None, ctx: Optional[RunContext] = None) -> tuple[Ticket, RunDir]:
    """Run (or resume) the RST / RST-Iter search in `spec` (a `SearchSpec` with `rst` set). Under data
    parallelism (`ctx`) every process transforms alike; only the primary one writes."""
    ctx = ctx if ctx is not None else RunContext(device)
    final = Path(root) / f"ticket_{spec.hash()}" / "ticket.pt"
    if final.exists():
        if log:
            log(f"ticket already on disk: {final}")
        return load_ticket(final), RunDir(final.parent)
    data = data if data is not None else load_dataset(spec.data)
    seed_everything(spec.search.seed)
    model = build_model(spec.model.model, spec.model.width, data.spec)
    dense_layers = check_rst(spec, model, data)
    run = ctx.open_run(root, "ticket", spec.hash(), spec.to_dict(), spec.search.seed)
    with ctx.hold(run):
        return _transform(spec, model, data, dense_layers, run, ctx, progress, log), run


def _transform(spec, model, data: Dataset, dense_layers: list[str], run: RunDir, ctx: RunContext, progress,
               log) -> Ticket:
    rst, p = spec.rst, spec.prune
    schedule = rst.schedule()
    per_epoch = len(data.train) // min(spec.search.batch_size, len(data.train))
    cfg = spec.search.replace(epochs=math.ceil(schedule.total_iterations / per_epoch))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mask: Optional[Mask] = None
    previous, search_time, cycles = 0.0, 0.0, []
    n = rst.n_cycles()
    for c, sparsity in enumerate(cycle_sparsities(p.ratio, n), start=1):
        cdir = RunDir(run.path / f"cycle_{c}")
        if cdir.file("summary.json").exists():  # a finished stage
            done = load_ticket(cdir.file("ticket.pt"))
            mask, state, search_time = done.mask, done.state_dict, done.meta["search_time"]
            cycles.append(cdir.read_json("summary.json"))
            previous = sparsity
            continue
        new = random_pick(model, mask, previous, sparsity, p.prune_seed + c - 1, dense_layers)
        squeezed = penalized_weights(mask if mask is not None else dense_mask(model), new)
        model.load_state_dict(state)
        rms_before = _rms(model, squeezed)
        hook = RSTPenalty(model, squeezed, schedule, ctx.device)
        result = train(model, data, cfg, spec.attack, ctx=ctx.with_run_dir(cdir),
                       mask=full_mask(model, mask) if mask is not None else None, augment=spec.data.augment,
                       progress=progress, log=log, step_hooks=[hook])
        rms_after, kept_rms = _rms(model, squeezed), _rms(model, new)
        apply_mask(model, new)  # the survivors keep their transformed values: no reset
        mask, state = new, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        search_time += result.train_time
        previous = sparsity
        report = sparsity_report(mask)
        summary = {"cycle": c, "sparsity": report["sparsity"], "remaining": report["remaining"],
                   "iterations": cfg.epochs * per_epoch, "train_time": result.train_time,
                   "search_time_cumulative": search_time, "eta_final": hook.state_dict()["eta"],
                   "squeezed_rms_before": rms_before, "squeezed_rms_after": rms_after, "kept_rms_after": kept_rms,
                   "final_clean": result.final.get("eval_clean"), "eval_split": result.eval_split}
        meta = {"model": spec.model.model, "width": spec.model.width, "method": rst.method,
                "strategy": "random_layerwise", "ratio": p.ratio, "round": c, "rounds": n, "cycles": n,
                "seed": spec.search.seed, "prune_seed": p.prune_seed, "dense_layers": dense_layers,
                "schedule": schedule.describe(), "transform_iterations": cfg.epochs * per_epoch,
                "search_lr": spec.search.lr, "search_attack": spec.attack.attack, "search_epochs": cfg.epochs,
                "search_time": search_time, "retrain_warmup": False, "search": spec.to_dict(), "hash": spec.hash(),
                "data_spec": data.spec.to_dict()}
        commit_stage(ctx, cdir, Ticket(mask, state, meta), summary)
        cycles.append(summary)
        if log:
            log(f"{rst.method} cycle {c}/{n}: sparsity {report['sparsity']:.4f}, squeezed weights' RMS "
                f"{rms_before:.4g} -> {rms_after:.4g} (kept {kept_rms:.4g}), {result.train_time:.1f}s")
    ticket = load_ticket(run.path / f"cycle_{n}" / "ticket.pt")
    if ctx.is_primary:
        run.write_json("summary.json", {"method": rst.method, "cycles": cycles, "search_time": search_time,
                                        "sparsity": ticket.sparsity()["sparsity"], "schedule": schedule.describe()})
        save_ticket(run.file("ticket.pt"), ticket)  # commits the search
    ctx.barrier()
    return ticket
