"""Device-resident batch loaders.

The uint8 images are moved to the device once. Each epoch draws its permutation, crop offsets and flips
from a CPU generator seeded by (seed, epoch), so batches are identical on any device and a resumed run
sees exactly the batches it would have seen. Crop and flip happen for a whole batch in one gather.
Under data parallelism every rank draws the same permutation and takes its own slice of each global
batch, so the ranks together see exactly the batches one process would.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .sources import Split

PAD = 4


def iterations_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over `n_images`: full batches only (BatchNorm needs more than one image, and
    a captured step one shape), a batch larger than the split being the whole split."""
    return n_images // min(batch_size, n_images)


class TrainLoader:
    """Shuffled, augmented batches of float images in [0, 1]."""

    def __init__(self, split: Split, batch_size: int, device: torch.device, seed: int, augment: bool = True,
                 memory_format: torch.memory_format = torch.contiguous_format, flips: bool = True,
                 rank: int = 0, world_size: int = 1):
        """`batch_size` is the global batch; rank `rank` of `world_size` gets its share of each one."""
        if len(split) < 1:
            raise ValueError("cannot build a loader over an empty split")
        self.batch_size = min(batch_size, len(split))
        if self.batch_size % world_size:
            raise ValueError(f"the batch of {self.batch_size} images does not split evenly over {world_size} "
                             "processes; choose a batch size divisible by the number of processes")
        self.shard = slice(rank * (self.batch_size // world_size), (rank + 1) * (self.batch_size // world_size))
        self.device, self.seed, self.augment, self.memory_format = device, seed, augment, memory_format
        self.flips = flips
        x = split.x.to(device)
        self.x = F.pad(x, (PAD, PAD, PAD, PAD)) if augment else x
        self.y = split.y.to(device)
        self.n = len(split)
        self.channels, self.height, self.width = split.x.shape[1:]  # crops keep the images' own size
        self._rows = torch.arange(self.height, device=device)
        self._cols = torch.arange(self.width, device=device)

    def __len__(self) -> int:
        return iterations_per_epoch(self.n, self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).to(self.device)
        if self.augment:
            shifts = torch.randint(0, 2 * PAD + 1, (self.n, 2), generator=g).to(self.device)
            flips = (torch.rand(self.n, generator=g) < 0.5).to(self.device)  # drawn even when off: same stream
            if not self.flips:
                flips.zero_()
        for b in range(len(self)):
            idx = perm[b * self.batch_size:(b + 1) * self.batch_size][self.shard]
            if self.augment:
                xb = self._crop_flip(idx, shifts[idx], flips[idx])
            else:
                xb = self.x[idx]
            yield to_float(xb, self.memory_format), self.y[idx]

    def _crop_flip(self, idx: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        rows = shifts[:, 0:1] + self._rows  # (B, H)
        cols = shifts[:, 1:2] + torch.where(flips[:, None], self.width - 1 - self._cols, self._cols)
        chans = torch.arange(self.channels, device=self.device)
        return self.x[idx[:, None, None, None], chans[None, :, None, None], rows[:, None, :, None],
                      cols[:, None, None, :]]


def to_float(x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    return x.to(memory_format=memory_format).float().div_(255)


def as_float(split: Split, device: torch.device, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` images of a split as one float tensor on the device (for fixed evaluation sets)."""
    n = len(split) if n is None else min(n, len(split))
    return to_float(split.x[:n].to(device)), split.y[:n].to(device)
