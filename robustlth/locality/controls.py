"""The paper's data controls: fewer training images, and labels merged into meaningless superclasses."""
from __future__ import annotations

import numpy as np
import torch

from ..data import NUM_CLASSES, Dataset, Split, balanced_indices


def train_fraction(data: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """A class-balanced random `fraction` of the training images; validation and test sets unchanged."""
    n = max(NUM_CLASSES, int(round(fraction * len(data.train))))
    idx = torch.from_numpy(balanced_indices(data.train.y, n, np.random.default_rng(seed)))
    return Dataset(Split(data.train.x[idx], data.train.y[idx]), data.test, data.val, data.source, data.spec)


def superclass_map(k: int, seed: int = 0) -> torch.Tensor:
    """Class -> superclass: the 10 classes in a random order dealt into `k` groups (sizes differ by at most
    one), so a superclass mixes unrelated classes (e.g. cars with cats)."""
    order = torch.randperm(NUM_CLASSES, generator=torch.Generator().manual_seed(seed))
    mapping = torch.empty(NUM_CLASSES, dtype=torch.long)
    mapping[order] = torch.arange(NUM_CLASSES) % k
    return mapping


def merge_labels(data: Dataset, k: int, seed: int = 0) -> Dataset:
    """Every split relabelled by `superclass_map(k, seed)`."""
    mapping = superclass_map(k, seed)

    def relabel(split):
        return None if split is None else Split(split.x, mapping[split.y])
    return Dataset(relabel(data.train), relabel(data.test), relabel(data.val), data.source, data.spec)
