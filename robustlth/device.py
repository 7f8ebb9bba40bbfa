"""The one place that decides where tensors live and how they are computed (precision, layout)."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .errors import ConfigError

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: Optional[str] = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; an unavailable device is a clear error."""
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"invalid device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"invalid device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def device_for_rank(name: Optional[str], local_rank: int) -> torch.device:
    """The device of one process of a data-parallel run: `auto`/`cuda` mean this node's GPU `local_rank`."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if device.index is None:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"process {local_rank} of this node has no GPU ({torch.cuda.device_count()} visible); "
                              "start at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def resolve_precision(device: torch.device, precision: str) -> str:
    """'auto' is bf16 on CUDA devices that support it (measured faster at equal accuracy), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_channels_last(device: torch.device, channels_last: Optional[bool]) -> bool:
    """None (auto) is channels_last on CUDA, where convolutions run faster in it."""
    return device.type == "cuda" if channels_last is None else bool(channels_last)


def resolve_cuda_graphs(device: torch.device, cuda_graphs: Optional[bool], precision: str, compile_: bool) -> bool:
    """None (auto) captures the training step as a CUDA graph on CUDA unless compile or fp16 is in use."""
    if cuda_graphs is None:
        return device.type == "cuda" and not compile_ and precision != "fp16"
    if cuda_graphs and device.type != "cuda":
        raise ConfigError(f"invalid cuda_graphs=True: CUDA graphs need a CUDA device, not {device}; use "
                          "--no-cuda-graphs")
    return bool(cuda_graphs)


def autocast(device: torch.device, precision: str):
    """Autocast context for 'bf16'/'fp16'; a no-op for 'fp32' ('auto' is resolved for the device)."""
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 is not supported on CPU; use bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def check_device_settings(device: torch.device, precision: str, cuda_graphs: Optional[bool] = None,
                          compile_: bool = False) -> None:
    """Fail before any work when `precision` or CUDA graphs cannot run on `device`."""
    autocast(device, precision)  # building the context checks the precision
    resolve_cuda_graphs(device, cuda_graphs, resolve_precision(device, precision), compile_)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def tune_for_static_shapes(device: torch.device) -> None:
    """Let cuDNN pick the fastest kernels for the fixed batch shapes training uses (no effect on CPU)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work; needed only where wall-clock is read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
