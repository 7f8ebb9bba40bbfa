"""The one place that decides where tensors live and how they are computed (precision, layout)."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .config import ConfigError

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


def autocast(device: torch.device, precision: str):
    """Autocast context for 'bf16'/'fp16'; a no-op for 'fp32'."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 is not supported on CPU; use bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def check_precision(device: torch.device, precision: str) -> None:
    """Fail before any work when `precision` cannot run on `device` (building the autocast context checks it)."""
    autocast(device, precision)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work; needed only where wall-clock is read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
