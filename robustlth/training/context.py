"""Where a training run happens: its device, its place among data-parallel processes, its run directory.

One process is `RunContext(device)`. Under `torchrun` every process holds one with its rank; the trainer asks
the context to wrap the model, to sum numbers over processes and to wait for the others, and writes files
only where `is_primary`.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from ..runs import RunDir

DEFAULT_TIMEOUT_S = 300.0  # a process that stops answering for this long ends every process of the run


@dataclass(frozen=True)
class RunContext:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    run_dir: Optional[RunDir] = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    sync_bn: bool = False  # SyncBatchNorm across processes (default: BatchNorm statistics per process)

    @property
    def is_primary(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def with_run_dir(self, run_dir: Optional[RunDir]) -> "RunContext":
        return replace(self, run_dir=run_dir)

    def open_dir(self, path) -> RunDir:
        """A plain directory (a stage of a run): made by the primary process; the others open it once it exists."""
        run = RunDir(Path(path)) if self.is_primary else None
        self.barrier()
        return run if run is not None else RunDir(Path(path))

    def open_run(self, root, kind: str, run_hash: str, config: dict, seed: Optional[int] = None) -> RunDir:
        """A run directory: created by the primary process; the others open it once it exists."""
        run = RunDir.create(root, kind, run_hash, config, self.device, seed) if self.is_primary else None
        self.barrier()
        return run if run is not None else RunDir(Path(root) / f"{kind}_{run_hash}")

    def open_run_dir(self, path, config: dict, run_hash: str, seed: Optional[int] = None) -> RunDir:
        """A stage's run directory at `path`: created by the primary process; the others open it once it exists."""
        run = RunDir.create_at(path, run_hash, config, self.device, seed) if self.is_primary else None
        self.barrier()
        return run if run is not None else RunDir(Path(path))

    def hold(self, run: RunDir):
        """The primary process locks the directory against other runs; its peers share that hold."""
        return run.lock() if self.is_primary else contextlib.nullcontext(run)

    def barrier(self) -> None:
        """Wait for every process; one that does not arrive within the timeout is an error on all of them."""
        if not self.distributed:
            return
        if dist.get_backend() == "gloo":  # names the missing rank
            dist.monitored_barrier(timeout=timedelta(seconds=self.timeout_s))
        else:
            dist.barrier()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the processes, in place (one collective)."""
        if self.distributed:
            dist.all_reduce(values)
        return values

    def all_true(self, flags: torch.Tensor) -> torch.Tensor:
        """Per-item flags True on every process (one collective): each process decides only its own items and
        leaves the others True, so the result holds every item's verdict on every process."""
        if not self.distributed:
            return flags
        cleared = (~flags).to(torch.int32)
        dist.all_reduce(cleared)
        return cleared == 0

    def shard(self, n: int) -> slice:
        """This process's share of `n` evaluation items (strided, so shares differ by at most one)."""
        return slice(self.rank, n, self.world_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training forward pass runs through: DistributedDataParallel (gradients averaged
        over the processes) when there are several, else the model itself."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        with warnings.catch_warnings():  # newer torch renames the flag; its meaning here is unchanged
            warnings.simplefilter("ignore", FutureWarning)
            return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Copy the primary's buffers (BatchNorm running statistics, kept per process while training) to every
        process, so evaluation and checkpoints see one model. Parameters agree already (averaged gradients)."""
        if self.distributed:
            with torch.no_grad():
                for t in model.buffers():
                    dist.broadcast(t.data, src=0)
