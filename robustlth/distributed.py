"""Data parallelism through torchrun: one process per device, set up from the environment torchrun gives
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

Every collective runs under a timeout, so a process that dies or hangs ends the others with a clear error
instead of leaving them waiting; `distributed_errors` turns the backend's error into one line.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta

import torch.distributed as dist

from .device import device_for_rank
from .errors import ConfigError, RobustLTHError
from .training.context import DEFAULT_TIMEOUT_S, RunContext


class DistributedError(RobustLTHError, RuntimeError):
    """Another process of a data-parallel run failed or stopped answering; every process stops."""


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"invalid environment variable {name}={text!r}: expected an integer (torchrun sets it)") \
            from None


def start(device_name: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S, sync_bn: bool = False) -> RunContext:
    """This process's run context: a single process, or one of WORLD_SIZE started by torchrun (the process
    group is created here: NCCL on GPUs, gloo on CPUs)."""
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"invalid RANK={rank} for WORLD_SIZE={world}")
    if timeout_s <= 0:
        raise ConfigError(f"invalid dist timeout {timeout_s}: expected a positive number of seconds")
    device = device_for_rank(device_name, local)
    if sync_bn and world > 1 and device.type != "cuda":
        raise ConfigError("--sync-bn needs GPUs (torch's SyncBatchNorm does not run on CPUs); leave it off to keep "
                          "BatchNorm statistics per process")
    if world == 1:
        return RunContext(device, timeout_s=timeout_s, sync_bn=sync_bn)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world} but {name} is not set: start the processes with torchrun")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        with distributed_errors(rank):
            dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s),
                                    **({"device_id": device} if device.type == "cuda" else {}))
    return RunContext(device, rank=rank, world_size=world, timeout_s=timeout_s, sync_bn=sync_bn)


def stop() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


# What gloo and NCCL say when a peer is gone (they raise a plain RuntimeError from inside backward()).
_PEER_LOST = ("gloo", "nccl", "connection reset", "connection closed", "timed out", "timeout", "broken pipe")


def _peer_lost(e: BaseException) -> bool:
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and dist.is_initialized() and any(m in text for m in _PEER_LOST)


@contextlib.contextmanager
def distributed_errors(rank: int):
    """Turn a failed collective (a peer died, timed out or was unreachable) into a `DistributedError`."""
    try:
        yield
    except RuntimeError as e:
        if not _peer_lost(e):
            raise
        first = " ".join(str(e).strip().splitlines()[0].split())[:300]
        raise DistributedError(f"process {rank}: another process of this run failed or stopped answering "
                               f"({type(e).__name__}: {first}); all processes stop. The first error is in the "
                               "log of the process that failed; run the same command again to resume") from None
