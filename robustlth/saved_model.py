"""Open any checkpoint robustlth wrote (a train run, a bench arm, an IMP round, an ablation cell's arm) as a model
plus the data it was trained on, from the checkpoint's own description (training.checkpoint.describe_run).
Checkpoints written before they described themselves fall back to their run's config.yaml."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn as nn

from .config import DataConfig, ModelConfig, load_yaml
from .errors import UsageError
from .factory import TrustSpec, check_trusted
from .training.checkpoint import checkpoint_architecture, read_description

if TYPE_CHECKING:
    from .datasets import DatasetSpec


@dataclass
class SavedModel:
    model: nn.Module
    model_name: str
    width: float
    data: Optional[DataConfig]  # the run's data (its own test images); None when the checkpoint does not say
    eval_n: Optional[int]  # images of the run's own final evaluation (None: its whole test set)
    kind: str
    checkpoint: Path
    sparsity: Optional[float]
    spec: DatasetSpec  # the data's shape and normalisation the model was built for
    channels: Optional[list]  # a shrunk structured ticket's channel counts (None: the width decides)


def checkpoint_file(path: Path) -> Path:
    path = Path(path)
    ckpt = path / "checkpoint.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise UsageError(f"{path} is not a run directory (or its checkpoint.pt): no checkpoint.pt there; give a train "
                         "run, a bench arm folder (runs/bench_*/dense), an IMP round or an ablation cell's arm folder")
    return ckpt


def _from_config_yaml(ckpt: Path) -> dict:
    """The description of an older checkpoint, from `robustlth train`'s config.yaml beside it."""
    cfg_file = ckpt.parent / "config.yaml"
    if not cfg_file.exists():
        raise UsageError(f"{ckpt} does not describe its model (written by an older robustlth) and its folder has no "
                         "config.yaml: pass --model NAME --width W --data SOURCE")
    sec = load_yaml(cfg_file)
    if not isinstance(sec.get("model"), dict) or not isinstance(sec.get("data"), dict):
        raise UsageError(f"{cfg_file} has no model and data sections: pass --model NAME --width W --data SOURCE")
    m = ModelConfig.from_dict(sec["model"])
    return {"model": m.model, "width": m.width, "data": sec["data"], "eval_n": None, "kind": "train", "mask": None}


def open_checkpoint(path: Path, device: torch.device, model: Optional[str] = None, width: Optional[float] = None,
                    data: Optional[str] = None, trust_factory: TrustSpec = None,
                    allow: str = "cli+model") -> SavedModel:
    """The trained model of a checkpoint, in eval mode on `device`; `model`/`width`/`data` override (or, for old
    checkpoints, supply) the description.

    A model factory (`package.module:function`) that the checkpoint or its run's config.yaml names is code the
    file chooses: it is imported only when `model` names it or `trust_factory` allows it, else one UsageError
    (worded for the command line, or `allow="api"` for Python) before anything is imported."""
    from .models import build_model
    ckpt = checkpoint_file(path)
    describe, saved = read_description(ckpt)
    weights = saved["model"]
    source = ckpt
    if describe is None:
        if model:
            describe = {"model": model, "width": width or 1.0, "data": None, "eval_n": None, "kind": "checkpoint",
                        "mask": None}
        else:
            describe, source = _from_config_yaml(ckpt), ckpt.parent / "config.yaml"
    if not model:  # the file chooses the model: a factory only with the user's word
        check_trusted(describe["model"], str(source), trust_factory, allow)
    name = model or describe["model"]
    width = float(width if width is not None else describe["width"])
    ModelConfig(model=name, width=width)  # validated: one line for an unknown name or a factory that won't import
    from .datasets import DatasetSpec
    spec = DatasetSpec.from_dict(saved.get("data_spec"))  # CIFAR-10 for checkpoints that do not record it
    arch = checkpoint_architecture(saved, ckpt)  # a shrunk structured ticket rebuilds from its channel counts
    channels = arch["channels"] if arch and arch["model"] == name and float(arch["width"]) == width else None
    from .models.shrink import state_mismatch  # shapes checked unallocated: an edited width builds nothing huge
    problem = state_mismatch(name, width, spec, weights, channels)
    if problem:
        raise UsageError(f"{ckpt} could not be loaded as a {name} checkpoint at width {width:g} ({problem})")
    net = build_model(name, width, spec, channels=channels)
    try:
        net.load_state_dict(weights)
    except (TypeError, KeyError, IndexError, RuntimeError) as e:
        raise UsageError(f"{ckpt} could not be loaded as a {name} checkpoint at width {width:g} "
                         f"({str(e).strip().splitlines()[0]})") from None
    data_cfg = DataConfig.from_dict(describe["data"]) if describe.get("data") else None
    if data:
        data_cfg = (data_cfg or DataConfig()).replace(data=data)
    mask = describe.get("mask")
    sparsity = None
    if mask:
        from .pruning import count, prunable_weights
        remaining, total = count({n: mask[n] for n in prunable_weights(net) if n in mask})
        sparsity = 1 - remaining / total if total else None
    return SavedModel(net.to(device).eval(), name, width, data_cfg, describe.get("eval_n"), describe.get("kind", ""),
                      ckpt, sparsity, spec, channels)
