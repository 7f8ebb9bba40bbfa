"""RST and RST-Iter cycles as stages of a ticket search (finder.TicketSearch): per cycle, a new random pick,
the transformation (dense training with the penalty on the weights the pick removes), then the mask, keeping
the transformed survivors. An interrupted transformation resumes from its checkpoint (η included), so the
result is the same as an uninterrupted run's."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import ConfigError
from ..data import Dataset, iterations_per_epoch
from ..stages import Result
from ..training import RunContext, train
from .masks import Mask, apply_mask, dense_mask, full_mask, sparsity_report
from .rst import RSTPenalty, cycle_sparsities, end_layers, penalized_weights, random_pick
from .search_checks import SearchStep, check_search
from .ticket import Ticket


@dataclass
class CycleResult(Result):
    """One RST cycle: the sparsity it reached and what the transformation did to the squeezed weights."""
    cycle: int
    sparsity: float
    remaining: int
    iterations: int
    train_time: float
    search_time_cumulative: float
    eta_final: float
    squeezed_rms_before: float
    squeezed_rms_after: float
    kept_rms_after: float
    eval_split: str
    final_clean: Optional[float] = None


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


@dataclass
class RstCycle(SearchStep):
    """RST cycle i: from the previous cycle's ticket (cycle 1: θ0, dense) to the cycle's sparsity."""
    kind = "cycle"
    result = CycleResult

    def run(self, ctx: RunContext) -> CycleResult:
        s, c = self.search, self.i
        spec, rst, p, model = s.spec, s.spec.rst, s.spec.prune, s.model
        schedule, n = rst.schedule(), rst.n_cycles()
        per_epoch = iterations_per_epoch(len(s.data.train), spec.search.batch_size)
        cfg = spec.search.replace(epochs=math.ceil(schedule.total_iterations / per_epoch))
        sparsities = cycle_sparsities(p.ratio, n)
        mask, state, before = (self.start.mask, self.start.state_dict, self.start.meta.search_time) if self.start \
            else (None, s.theta0, 0.0)
        new = random_pick(model, mask, sparsities[c - 2] if c > 1 else 0.0, sparsities[c - 1], p.prune_seed + c - 1,
                          s.dense_layers)
        squeezed = penalized_weights(mask if mask is not None else dense_mask(model), new)
        model.load_state_dict(state)
        rms_before = _rms(model, squeezed)
        hook = RSTPenalty(model, squeezed, schedule, ctx.device)
        result = train(model, s.data, cfg, spec.attack, ctx=ctx,
                       mask=full_mask(model, mask) if mask is not None else None, augment=spec.data.augment,
                       progress=s.progress, log=self.log, step_hooks=[hook])
        rms_after, kept_rms = _rms(model, squeezed), _rms(model, new)
        apply_mask(model, new)  # the survivors keep their transformed values: no reset
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        search_time = before + result.train_time
        report = sparsity_report(new)
        self.save(ctx, Ticket(new, state, s.info(
            c, search_time, method=rst.method, strategy="random_layerwise", rounds=n, cycles=n,
            prune_seed=p.prune_seed, dense_layers=s.dense_layers, schedule=schedule.describe(),
            transform_iterations=cfg.epochs * per_epoch, search_epochs=cfg.epochs, retrain_warmup=False)))
        if self.log:
            self.log(f"{rst.method} cycle {c}/{n}: sparsity {report['sparsity']:.4f}, squeezed weights' RMS "
                     f"{rms_before:.4g} -> {rms_after:.4g} (kept {kept_rms:.4g}), {result.train_time:.1f}s")
        return CycleResult(cycle=c, sparsity=report["sparsity"], remaining=report["remaining"],
                           iterations=cfg.epochs * per_epoch, train_time=result.train_time,
                           search_time_cumulative=search_time, eta_final=hook.state_dict()["eta"],
                           squeezed_rms_before=rms_before, squeezed_rms_after=rms_after, kept_rms_after=kept_rms,
                           eval_split=result.eval_split, final_clean=result.final.get("eval_clean"))
