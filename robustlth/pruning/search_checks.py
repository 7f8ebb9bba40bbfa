"""What the two ticket searches (IMP and RST) share: the checks before they train, and the base of their steps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..config import ConfigError
from ..data import Dataset, iterations_per_epoch
from ..stages import Stage
from .masks import prunable_weights
from .ticket import Ticket, save_ticket


def check_search(spec, model: torch.nn.Module, data: Dataset) -> None:
    """What can be checked before the search trains: layer names to keep dense, the rewind point's reach."""
    p, names = spec.prune, list(prunable_weights(model))
    unknown = sorted(set(p.dense_layers) - set(names))
    if unknown:
        raise ConfigError(f"invalid dense_layers {', '.join(unknown)}: not prunable weights of {spec.model.model}; "
                          f"choose from {', '.join(names)}")
    iterations = spec.search.epochs * iterations_per_epoch(len(data.train), spec.search.batch_size)
    if p.rewind_iteration > iterations:
        raise ConfigError(f"invalid rewind_iteration={p.rewind_iteration}: the search has only {iterations} "
                          f"iterations ({spec.search.epochs} epochs of {spec.search.batch_size}-image batches)")


@dataclass
class SearchStep(Stage):
    """A step of a ticket search (an IMP round, an RST cycle): a stage named `<kind>_<i>` in the search's
    directory that starts from the previous step's ticket and saves its own ticket.pt (the runner then writes
    result.json, so a step killed in between is redone)."""
    search: Any  # the finder.TicketSearch it belongs to
    i: int
    start: Optional[Ticket]  # the previous step's ticket; None in the first step (θ0, dense)
    log: Optional[Callable[[str], None]]

    def sections(self) -> dict:
        return {**self.search.sections(), self.kind: self.i}

    def name(self) -> str:
        return f"{self.kind}_{self.i}"

    @property
    def seed(self) -> int:
        return self.search.seed

    def save(self, ctx, ticket: Ticket) -> None:
        if ctx.is_primary:  # under data parallelism every process made the same ticket
            save_ticket(ctx.run_dir.file("ticket.pt"), ticket)
