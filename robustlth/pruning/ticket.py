"""Ticket files: the mask, the initial (or rewound) weights, and metadata, in one `torch.save` file that
loads with `weights_only=True`."""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import RobustLTHError
from ..runs import atomic_torch_save
from .masks import Mask, check_mask, full_mask, sparsity_report

FORMAT = "robustlth-ticket-v1"


class TicketError(RobustLTHError, ValueError):
    pass


@dataclass
class Ticket:
    mask: Mask
    state_dict: dict  # the weights training starts from (θ0, or θk when rewinding)
    meta: dict = field(default_factory=dict)  # model, width, strategy, ratio, search config, seed, search_time

    def full_mask(self, model: nn.Module) -> Mask:
        """The mask to enforce during training (weight masks plus zeroed BatchNorm channels)."""
        check_mask(model, self.mask)
        return full_mask(model, self.mask)

    def sparsity(self) -> dict:
        return sparsity_report(self.mask)


def save_ticket(path: str | Path, ticket: Ticket) -> Path:
    path = Path(path)
    meta = dict(ticket.meta)
    meta.setdefault("sparsity", ticket.sparsity()["sparsity"])
    atomic_torch_save(path, {"format": FORMAT, "mask": {k: v.cpu() for k, v in ticket.mask.items()},
                             "state_dict": {k: v.detach().cpu() for k, v in ticket.state_dict.items()},
                             "meta": meta})
    return path


def load_ticket(path: str | Path) -> Ticket:
    path = Path(path)
    if not path.is_file():
        raise TicketError(f"ticket file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise TicketError(f"{path} is not a readable ticket file ({type(e).__name__}: {str(e).splitlines()[0]})") \
            from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise TicketError(f"{path} is not a robustlth ticket (expected format {FORMAT})")
    for key in ("mask", "state_dict", "meta"):
        if key not in obj:
            raise TicketError(f"{path}: ticket is missing {key!r}")
    for key in ("model", "width"):
        if key not in obj["meta"]:
            raise TicketError(f"{path}: ticket metadata lacks {key!r}")
    return Ticket(obj["mask"], obj["state_dict"], obj["meta"])


def ticket_model(ticket: Ticket) -> nn.Module:
    """A model of the ticket's architecture holding the ticket's starting weights, masked."""
    from ..models import build_model
    from .masks import apply_mask
    model = build_model(ticket.meta["model"], ticket.meta["width"])
    try:
        check_mask(model, ticket.mask)
        model.load_state_dict(ticket.state_dict)
    except (ValueError, RuntimeError) as e:
        raise TicketError(f"ticket does not fit {ticket.meta['model']} at width {ticket.meta['width']}: "
                          f"{str(e).splitlines()[0]}") from None
    apply_mask(model, ticket.mask)
    return model
