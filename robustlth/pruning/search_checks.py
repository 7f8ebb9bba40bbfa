"""What a ticket search (IMP or RST) can check before it trains, shared by both searches."""
from __future__ import annotations

import torch

from ..config import ConfigError
from ..data import Dataset
from .masks import prunable_weights


def check_search(spec, model: torch.nn.Module, data: Dataset) -> None:
    """What can be checked before the search trains: layer names to keep dense, the rewind point's reach."""
    p, names = spec.prune, list(prunable_weights(model))
    unknown = sorted(set(p.dense_layers) - set(names))
    if unknown:
        raise ConfigError(f"invalid dense_layers {', '.join(unknown)}: not prunable weights of {spec.model.model}; "
                          f"choose from {', '.join(names)}")
    iterations = spec.search.epochs * (len(data.train) // min(spec.search.batch_size, len(data.train)))
    if p.rewind_iteration > iterations:
        raise ConfigError(f"invalid rewind_iteration={p.rewind_iteration}: the search has only {iterations} "
                          f"iterations ({spec.search.epochs} epochs of {spec.search.batch_size}-image batches)")
