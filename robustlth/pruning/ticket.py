"""Ticket files: the mask, the initial (or rewound) weights, and metadata, in one `torch.save` file that
loads with `weights_only=True`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..datasets import DatasetSpec
from ..errors import FileFormatError, RobustLTHError
from ..runs import atomic_torch_save
from ..safety import safe_torch_load
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


def commit_stage(ctx, stage_dir, ticket: Ticket, summary: dict) -> None:
    """Write a search stage (an IMP round, an RST cycle): its ticket, then its summary.json, which marks the
    stage done; only the primary process writes and every process waits for it."""
    if ctx.is_primary:
        save_ticket(stage_dir.file("ticket.pt"), ticket)
        stage_dir.write_json("summary.json", summary)
    ctx.barrier()


def load_ticket(path: str | Path) -> Ticket:
    path = Path(path)
    if not path.is_file():
        raise TicketError(f"ticket file {path} does not exist")
    try:
        obj = safe_torch_load(path, "ticket file")
    except FileFormatError as e:
        raise TicketError(str(e)) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise TicketError(f"{path} is not a robustlth ticket (expected format {FORMAT})")
    for key, kind in (("mask", dict), ("state_dict", dict), ("meta", dict)):
        if not isinstance(obj.get(key), kind):
            raise TicketError(f"{path}: ticket is missing {key!r} (or it is not a mapping)")
    for key in ("model", "width"):
        if key not in obj["meta"]:
            raise TicketError(f"{path}: ticket metadata lacks {key!r}")
    bad = [k for k, m in obj["mask"].items() if not (isinstance(m, torch.Tensor) and m.dtype == torch.bool)]
    if bad:
        raise TicketError(f"{path}: mask entry {bad[0]!r} is not a boolean tensor (a mask keeps or prunes a weight)")
    if not all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values()):
        raise TicketError(f"{path}: the ticket's state_dict holds values that are not tensors")
    return Ticket(obj["mask"], obj["state_dict"], obj["meta"])


def ticket_data_spec(ticket: Ticket) -> DatasetSpec:
    """The dataset the ticket was found on (tickets from before specs were recorded: CIFAR-10)."""
    return DatasetSpec.from_dict(ticket.meta.get("data_spec"))


def ticket_model(ticket: Ticket) -> nn.Module:
    """A model of the ticket's architecture holding the ticket's starting weights, masked."""
    from ..models import build_model
    from .masks import apply_mask
    try:
        model = build_model(ticket.meta["model"], ticket.meta["width"], ticket_data_spec(ticket))
        check_mask(model, ticket.mask)
        model.load_state_dict(ticket.state_dict)
    except (ValueError, RuntimeError, TypeError) as e:
        raise TicketError(f"ticket does not fit {ticket.meta['model']} at width {ticket.meta['width']}: "
                          f"{str(e).splitlines()[0]}") from None
    apply_mask(model, ticket.mask)
    return model
