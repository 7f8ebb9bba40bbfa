"""Training checkpoints that load with `weights_only=True`: tensors and plain containers only (the RNG states
as tensors), so resuming a run can never execute code from a file. A damaged or foreign checkpoint is one
clear error that names the file and how to start over.

v3 keeps every hook's state (the guard's and the rewind weights too) in one mapping, `hooks`, by hook key."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..errors import FileFormatError
from ..runs import atomic_torch_save
from ..safety import safe_torch_load

FORMAT = "robustlth-checkpoint-v3"
LOOP_KEYS = ("history", "epoch", "train_time", "eval_time", "stopped")  # the training loop's own state


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) generator states, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, describe: Optional[dict] = None,
                    mask: Optional[dict] = None, **state) -> None:
    """Weights, optimiser, RNG states, the loop state (`LOOP_KEYS`) and `hooks` (key -> state dict), written
    atomically; with `describe` (see `describe_run`) also what the weights are, so `robustlth eval` can open the
    file on its own."""
    extra = {DESCRIBE_KEY: with_mask(describe, mask)} if describe is not None else {}
    atomic_torch_save(path, {"format": FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "rng": rng_state(), "architecture": getattr(model, "architecture", None), **state, **extra})


def checkpoint_architecture(ckpt: dict, path: Path) -> dict | None:
    """The checkpoint's {model, width, channels} (channels: a shrunk structured ticket's counts), checked to be
    plain data; None for checkpoints that do not record it."""
    arch = ckpt.get("architecture") if isinstance(ckpt, dict) else None
    if arch is None:
        return None
    channels = arch.get("channels") if isinstance(arch, dict) else None
    if not (isinstance(arch, dict) and isinstance(arch.get("model"), str)
            and isinstance(arch.get("width"), (int, float)) and not isinstance(arch.get("width"), bool)
            and (channels is None or (isinstance(channels, list) and all(type(c) is int for c in channels)))):
        raise FileFormatError(f"{path}: its architecture record is not {{model, width, channels}}")
    if channels is not None:  # a shrunk model: its counts must be those of the stored tensors, checked unallocated
        from ..datasets import DatasetSpec
        from ..factory import is_factory_path
        from ..models.shrink import state_mismatch
        if is_factory_path(arch["model"]):
            raise FileFormatError(f"{path}: its architecture record gives channel counts for {arch['model']}, a user "
                                  "factory, which structured tickets cannot shrink (damaged or edited?)")
        try:
            spec = DatasetSpec.from_dict(ckpt.get("data_spec"))
        except (ValueError, TypeError, KeyError) as e:
            raise FileFormatError(f"{path}: its data_spec record is damaged ({e})") from None
        problem = state_mismatch(arch["model"], float(arch["width"]), spec, ckpt.get("model"), channels)
        if problem:
            raise FileFormatError(f"{path}: its architecture record (channels {_shown(channels)}) does not fit its "
                                  f"stored weights: {problem} (damaged or edited?)")
    return arch


def _shown(values: list) -> str:
    text = str(values)
    return text if len(text) <= 50 else text[:47] + "...]"


def load_state_file(path: Path, what: str) -> dict:
    """A saved state_dict (e.g. the rewind weights): a mapping of names to tensors, or a clear error."""
    state = safe_torch_load(path, what, f"delete {path} (or its run directory) to start this run over")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FileFormatError(f"{path} is not a {what} (a mapping of parameter names to tensors); delete it to "
                              "start this run over")
    return state


def _open(path: Path) -> tuple[dict, str]:
    """(the checkpoint, the advice that ends its errors), refusing anything but this version's format."""
    start_over = f"delete {path} (or its run directory) to start this run over"
    ckpt = safe_torch_load(path, "robustlth checkpoint", start_over)
    ours = (isinstance(ckpt, dict) and ckpt.get("format") == FORMAT and isinstance(ckpt.get("hooks"), dict)
            and all(k in ckpt for k in ("model", "optimizer", "rng", *LOOP_KEYS)))
    if not ours:
        raise FileFormatError(f"{path} is not a {FORMAT} file (an older version's or a foreign checkpoint); "
                              f"{start_over}")
    return ckpt, start_over


def load_weights(path: Path, model: nn.Module) -> None:
    """Only the weights: a finished run reopened to hand back its trained model."""
    ckpt, start_over = _open(path)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise FileFormatError(f"{path} does not fit this run ({str(e).strip().splitlines()[0]}); {start_over}") \
            from None


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    hooks: Optional[dict] = None) -> dict:
    """Restore model, optimiser, RNG and hook states (`hooks`: key -> hook; a hook the file does not know
    keeps its own) from `path`; returns the loop state (`LOOP_KEYS`)."""
    ckpt, start_over = _open(path)
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        for key, hook in (hooks or {}).items():  # after the weights: a hook may read them
            if key in ckpt["hooks"]:
                hook.load_state_dict(ckpt["hooks"][key])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FileFormatError(f"{path} does not fit this run ({str(e).strip().splitlines()[0]}); {start_over}") \
            from None
    return {k: ckpt[k] for k in LOOP_KEYS}


# --- self-description --------------------------------------------------------------------------------------
# A checkpoint names its model (registry name or `package.module:factory`), width, data source (the DataConfig
# dict, so the run's own test images can be rebuilt), how many of them its final evaluation used, and its
# sparsity mask where there is one. Plain values and bool tensors only: it loads with weights_only=True.
DESCRIBE_KEY = "describe"


def describe_run(model: str, width: float, data: Optional[dict] = None, eval_n: Optional[int] = None,
                 kind: str = "train") -> dict:
    """What `robustlth eval` needs to rebuild and evaluate a checkpoint without its run directory."""
    return {"model": model, "width": float(width), "data": dict(data) if data is not None else None,
            "eval_n": eval_n, "kind": kind}


def with_mask(describe: dict, mask: Optional[dict]) -> dict:
    if not mask:
        return dict(describe, mask=None)
    return dict(describe, mask={k: v.detach().bool().cpu() for k, v in mask.items()})


def read_description(path: Path) -> tuple[Optional[dict], dict]:
    """(description or None for checkpoints written before it existed, the whole checkpoint) of a checkpoint:
    the checkpoint also holds the weights (`model`), the dataset spec and the architecture."""
    ckpt = safe_torch_load(path, "robustlth checkpoint", f"is {path} a robustlth checkpoint.pt?")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise FileFormatError(f"{path} is not a robustlth checkpoint (no model weights in it)")
    describe = ckpt.get(DESCRIBE_KEY)
    if describe is not None and not (isinstance(describe, dict) and {"model", "width"} <= set(describe)):
        raise FileFormatError(f"{path}: its description is damaged (no model or width)")
    return describe, ckpt
