"""Ticket files: the mask, the initial (or rewound) weights, and metadata, in one `torch.save` file that
loads with `weights_only=True`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from ..datasets import DatasetSpec
from ..errors import FileFormatError, RobustLTHError
from ..factory import TrustSpec, check_trusted, trusted_factories
from ..runs import atomic_torch_save
from ..safety import safe_torch_load
from .masks import Mask, check_mask, full_mask, sparsity_report

FORMAT = "robustlth-ticket-v1"


class TicketError(RobustLTHError, ValueError):
    pass


@dataclass
class TicketInfo:
    """What a ticket is: its architecture, and how it was found (None where its maker did not say). Stored in
    the ticket file as a plain dict of the fields that are set; keys this version does not know (a ticket
    written by another version) are kept in `extra`, so such files still load and save unchanged."""
    model: str
    width: float
    data_spec: Optional[dict] = None  # the DatasetSpec dict; None: CIFAR-10 (tickets from before it was recorded)
    sparsity: Optional[float] = None
    hash: Optional[str] = None  # the search's config hash
    search: Optional[dict] = None  # the search's config sections
    seed: Optional[int] = None
    strategy: Optional[str] = None
    ratio: Optional[float] = None
    round: Optional[int] = None  # the IMP round or RST cycle that made it
    rounds: Optional[int] = None
    rewind_iteration: Optional[int] = None
    search_lr: Optional[float] = None  # the retraining warm-up starts here
    search_attack: Optional[str] = None
    search_epochs: Optional[int] = None
    search_time: Optional[float] = None  # seconds spent finding it (cumulative over rounds or cycles)
    retrain_warmup: Optional[bool] = None  # False: retrain without the warm-up from search_lr (RST)
    method: Optional[str] = None  # rst or rst-iter
    cycles: Optional[int] = None
    prune_seed: Optional[int] = None
    dense_layers: Optional[list] = None
    schedule: Optional[dict] = None  # RST's η schedule
    transform_iterations: Optional[int] = None
    control: Optional[str] = None  # a control made from another ticket: reinit, random_layerwise, noise_0.5, ...
    control_seed: Optional[int] = None
    structured: Optional[dict] = None  # a structured ticket's kept channels (pruning.structured)
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, meta: "TicketInfo | dict") -> "TicketInfo":
        """`meta` itself, or the TicketInfo of a ticket file's plain dict (model and width required)."""
        if isinstance(meta, TicketInfo):
            return meta
        if not isinstance(meta, dict):
            raise TicketError(f"ticket metadata is a {type(meta).__name__}, not a mapping")
        missing = [k for k in ("model", "width") if k not in meta]
        if missing:
            raise TicketError(f"ticket metadata lacks {missing[0]!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in meta.items() if k in known},
                   extra={k: v for k, v in meta.items() if k not in known})

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}

    def replace(self, **changes: Any) -> "TicketInfo":
        return dataclasses.replace(self, **changes)


@dataclass
class Ticket:
    mask: Mask
    state_dict: dict  # the weights training starts from (θ0, or θk when rewinding)
    meta: TicketInfo  # a plain dict is taken as a ticket file's metadata
    # The file it was read from (None: made in memory, its metadata its maker's own), and the model factories
    # whoever read it vouched for: a factory the file names is built only when trusted (check_ticket_factory).
    source: Optional[Path] = field(default=None, compare=False, repr=False)
    trusted: frozenset = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self):
        self.meta = TicketInfo.of(self.meta)

    def full_mask(self, model: nn.Module) -> Mask:
        """The mask to enforce during training (weight masks plus zeroed BatchNorm channels)."""
        check_mask(model, self.mask)
        return full_mask(model, self.mask)

    def sparsity(self) -> dict:
        return sparsity_report(self.mask)


def save_ticket(path: str | Path, ticket: Ticket) -> Path:
    path = Path(path)
    meta = ticket.meta if ticket.meta.sparsity is not None else \
        ticket.meta.replace(sparsity=ticket.sparsity()["sparsity"])
    atomic_torch_save(path, {"format": FORMAT, "mask": {k: v.cpu() for k, v in ticket.mask.items()},
                             "state_dict": {k: v.detach().cpu() for k, v in ticket.state_dict.items()},
                             "meta": meta.to_dict()})
    return path


def load_ticket(path: str | Path, trust_factory: TrustSpec = None) -> Ticket:
    """The ticket in a file, checked to be plain tensors and metadata; nothing is imported. A model factory its
    metadata names is code the file chooses: the edges that build it (`robustlth train --mask`, `control`, the
    Python API) pass the ticket through `check_ticket_factory` first; `trust_factory` (factory names or
    factories) is what the caller vouches for."""
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
    try:
        meta = TicketInfo.of(obj["meta"])
    except TicketError as e:
        raise TicketError(f"{path}: {e}") from None
    bad = [k for k, m in obj["mask"].items() if not (isinstance(m, torch.Tensor) and m.dtype == torch.bool)]
    if bad:
        raise TicketError(f"{path}: mask entry {bad[0]!r} is not a boolean tensor (a mask keeps or prunes a weight)")
    if not all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values()):
        raise TicketError(f"{path}: the ticket's state_dict holds values that are not tensors")
    return Ticket(obj["mask"], obj["state_dict"], meta, source=path, trusted=trusted_factories(trust_factory))


def check_ticket_factory(ticket: Ticket, trust_factory: TrustSpec = None, allow: str = "cli") -> None:
    """Refuse (one UsageError, nothing imported) a ticket read from a file whose metadata names a model factory
    that neither its reader (`load_ticket(trust_factory=)`) nor `trust_factory` trusts. Registry names and
    tickets made in memory pass."""
    if ticket.source is not None:
        check_trusted(ticket.meta.model, f"ticket {ticket.source}", ticket.trusted | trusted_factories(trust_factory),
                      allow)
        ticket.trusted = ticket.trusted | {ticket.meta.model}  # vouched for: later builds of this ticket need not ask


def ticket_data_spec(ticket: Ticket) -> DatasetSpec:
    """The dataset the ticket was found on (tickets from before specs were recorded: CIFAR-10)."""
    return DatasetSpec.from_dict(ticket.meta.data_spec)


def ticket_model(ticket: Ticket) -> nn.Module:
    """A model of the ticket's architecture holding the ticket's starting weights, masked. A ticket read from a
    file builds only a registry model or a factory its reader trusted (`load_ticket(trust_factory=)`): a stage
    reading its own ticket trusts the model its own config names, so a planted file cannot choose another."""
    from ..models import build_model
    from .masks import apply_mask
    check_ticket_factory(ticket)  # a file never chooses the code to build: its reader vouches for its model
    meta = ticket.meta
    try:
        model = build_model(meta.model, meta.width, ticket_data_spec(ticket))
        check_mask(model, ticket.mask)
        model.load_state_dict(ticket.state_dict)
    except (ValueError, RuntimeError, TypeError) as e:
        raise TicketError(f"ticket does not fit {meta.model} at width {meta.width}: "
                          f"{str(e).splitlines()[0]}") from None
    apply_mask(model, ticket.mask)
    return model
