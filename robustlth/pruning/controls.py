"""Controls that make a ticket from a ticket: random re-initialisation, random pruning at the same sparsity,
and Gaussian noise of k·σ on the initial weights."""
from __future__ import annotations

import torch

from ..config import ConfigError
from ..models import build_model
from .masks import prunable_weights
from .strategies import RandomPruning
from .ticket import Ticket, ticket_data_spec


def reinit(ticket: Ticket, seed: int) -> Ticket:
    """Same mask, fresh initial weights from another seed."""
    torch.manual_seed(seed)
    model = build_model(ticket.meta.model, ticket.meta.width, ticket_data_spec(ticket))
    return Ticket(dict(ticket.mask), model.state_dict(), ticket.meta.replace(control="reinit", control_seed=seed))


def random_prune(ticket: Ticket, seed: int, scope: str = "layerwise") -> Ticket:
    """Same starting weights, a random mask with the ticket's per-layer (layerwise) or total (global) sparsity."""
    dense = {n: torch.ones_like(m) for n, m in ticket.mask.items()}
    mask = RandomPruning(seed, scope).match(dense, ticket.mask)
    return Ticket(mask, dict(ticket.state_dict), ticket.meta.replace(control=f"random_{scope}", control_seed=seed))


def perturb(ticket: Ticket, k: float, seed: int) -> Ticket:
    """Gaussian noise of k·σ added to each prunable layer's initial weights (σ: that layer's weight std)."""
    model = build_model(ticket.meta.model, ticket.meta.width, ticket_data_spec(ticket))
    g = torch.Generator().manual_seed(seed)
    state = {n: v.clone() for n, v in ticket.state_dict.items()}
    for name in prunable_weights(model):
        w = state[name]
        state[name] = w + k * w.float().std() * torch.randn(w.shape, generator=g)
    return Ticket(dict(ticket.mask), state, ticket.meta.replace(control=f"noise_{k}", control_seed=seed))


CONTROLS = ("reinit", "random_layerwise", "random_global", "noise")


def make_control(ticket: Ticket, kind: str, seed: int = 1, k: float = 0.5) -> Ticket:
    if kind == "reinit":
        return reinit(ticket, seed)
    if kind in ("random_layerwise", "random_global"):
        return random_prune(ticket, seed, kind.split("_")[1])
    if kind == "noise":
        return perturb(ticket, k, seed)
    raise ConfigError(f"unknown control {kind!r}: expected one of {', '.join(CONTROLS)}")
