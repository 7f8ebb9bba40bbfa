"""Structured boosting tickets: after the cheap search, rank whole channels instead of single weights, keep a
fraction of each group's channels (per layer, or globally with a floor per layer), reset the survivors to θ0
and shrink the network. Unlike an unstructured ticket the result is a smaller dense model, so every training
step is cheaper.

Scores follow the paper's criterion at channel granularity: BatchNorm |γ| or the filter's L1/L2 norm, each
divided by the mean score of its layer so one global threshold treats layers alike.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..config import ConfigError
from ..models.shrink import ChannelGroup, channel_groups, shrink
from .masks import Mask, prunable_weights
from .ticket import Ticket, TicketError, TicketInfo, ticket_data_spec

CRITERIA = ("bn", "l1", "l2")
SCOPES = ("layerwise", "global")


def check_structured(keep: float, criterion: str, scope: str, floor: float) -> None:
    if criterion not in CRITERIA:
        raise ConfigError(f"invalid structured criterion {criterion!r}: expected one of {', '.join(CRITERIA)}")
    if scope not in SCOPES:
        raise ConfigError(f"invalid structured scope {scope!r}: expected one of {', '.join(SCOPES)}")
    if not 0 < keep <= 1:
        raise ConfigError(f"invalid structured keep={keep!r}: expected a fraction of channels in (0, 1]")
    if not 0 <= floor <= 1:
        raise ConfigError(f"invalid structured floor={floor!r}: expected a fraction of channels in [0, 1]")


@torch.no_grad()
def channel_scores(model: nn.Module, criterion: str) -> dict[str, torch.Tensor]:
    """Group name -> one layer-normalised score per output channel (higher: more important)."""
    params = dict(model.named_parameters())
    out = {}
    for g in channel_groups(model):
        if criterion == "bn":
            if g.bn is None:
                raise ConfigError(f"{g.name} has no BatchNorm: use the l1 or l2 criterion")
            s = params[f"{g.bn}.weight"].abs()
        else:
            w = params[g.producer].flatten(1)
            s = w.abs().sum(1) if criterion == "l1" else w.norm(dim=1)
        s = s.float().cpu()
        out[g.name] = s / s.mean().clamp_min(1e-12)
    return out


def _top(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n highest scores, sorted by position (ties broken by position, deterministically)."""
    order = torch.argsort(-scores, stable=True)
    return order[:n].sort().values


def select_channels(scores: dict[str, torch.Tensor], keep: float, scope: str = "layerwise",
                    floor: float = 0.1) -> dict[str, torch.Tensor]:
    """Group name -> kept channel indices. Layerwise: round(keep·C) of each group. Global: the top keep·ΣC
    scores over all groups, then each group topped up to at least ceil(floor·C) channels (and one)."""
    if scope == "layerwise":
        return {n: _top(s, max(1, round(keep * s.numel()))) for n, s in scores.items()}
    names = list(scores)
    flat = torch.cat([scores[n] for n in names])
    owner = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(names)])
    pos = torch.cat([torch.arange(scores[n].numel()) for n in names])
    chosen = torch.argsort(-flat, stable=True)[:round(keep * flat.numel())]
    out = {}
    for i, n in enumerate(names):
        kept = pos[chosen[owner[chosen] == i]]
        need = max(1, math.ceil(floor * scores[n].numel()))
        out[n] = kept.sort().values if kept.numel() >= need else _top(scores[n], need)
    return out


def structured_mask(model: nn.Module, keep: dict[str, torch.Tensor]) -> Mask:
    """The same ticket as a mask on the full model: pruned channels' filters, the next layer's inputs that
    read them, and (through `full_mask`) their BatchNorm scale and shift are zero."""
    weights = prunable_weights(model)
    mask = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for g in channel_groups(model):
        dead = torch.ones(weights[g.producer].shape[0], dtype=torch.bool)
        dead[keep[g.name]] = False
        mask[g.producer][dead] = False
        mask[g.consumer][:, dead] = False
    return mask


def full_structured_mask(model: nn.Module, keep: dict[str, torch.Tensor]) -> Mask:
    """`structured_mask` plus the BatchNorm scale/shift entries of the pruned channels, explicitly (a masked
    full model then outputs exact zeros on them in train and eval mode)."""
    mask = structured_mask(model, keep)
    params = dict(model.named_parameters())
    for g in channel_groups(model):
        if g.bn is not None:
            alive = torch.zeros(params[f"{g.bn}.weight"].shape[0], dtype=torch.bool)
            alive[keep[g.name]] = True
            mask[f"{g.bn}.weight"] = alive
            mask[f"{g.bn}.bias"] = alive.clone()
    return mask


def structured_ticket(trained: nn.Module, theta0: dict, meta: TicketInfo | dict, keep: float, criterion: str = "bn",
                      scope: str = "layerwise", floor: float = 0.1) -> Ticket:
    """A structured ticket from the searched network `trained`: channels ranked on its weights, survivors
    reset to θ0. Stored as an ordinary ticket (mask on the full model) whose metadata names the kept channels,
    so `ticket_model` gives the masked full model and `shrunk_model` the smaller dense one."""
    check_structured(keep, criterion, scope, floor)
    kept = select_channels(channel_scores(trained, criterion), keep, scope, floor)
    groups = channel_groups(trained)
    info = {"keep": keep, "criterion": criterion, "scope": scope, "floor": floor,
            "channels": [int(kept[g.name].numel()) for g in groups],
            "kept": {g.name: kept[g.name].tolist() for g in groups}}
    return Ticket(structured_mask(trained, kept), dict(theta0), TicketInfo.of(meta).replace(structured=info))


def kept_channels(ticket: Ticket) -> dict[str, torch.Tensor]:
    info = ticket.meta.structured
    if not isinstance(info, dict) or not isinstance(info.get("kept"), dict):
        raise TicketError("not a structured ticket: its metadata names no kept channels")
    return {n: torch.tensor(v, dtype=torch.long) for n, v in info["kept"].items()}


def shrunk_model(ticket: Ticket) -> nn.Module:
    """The structured ticket as a smaller dense model holding the survivors' starting weights (θ0)."""
    from ..models import build_model
    spec = ticket_data_spec(ticket)  # the data the ticket was found on, never a default
    full = build_model(ticket.meta.model, ticket.meta.width, spec)
    return shrink(full, kept_channels(ticket), spec, ticket.state_dict)


__all__ = ["CRITERIA", "SCOPES", "ChannelGroup", "channel_scores", "check_structured", "full_structured_mask",
           "kept_channels", "select_channels", "shrunk_model", "structured_mask", "structured_ticket"]
