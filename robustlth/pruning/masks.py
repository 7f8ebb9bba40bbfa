"""Masks: parameter name -> boolean tensor over every Conv2d and Linear weight (biases and BatchNorm are not
pruned). A BatchNorm channel whose whole filter is pruned is zeroed too, through extra mask entries."""
from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

Mask = dict[str, torch.Tensor]
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of all Conv2d and Linear layers, in registration order (the classifier last)."""
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def output_layer(model: nn.Module) -> str:
    return list(prunable_weights(model))[-1]


def dense_mask(model: nn.Module) -> Mask:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in prunable_weights(model).items()}


def check_mask(model: nn.Module, mask: Mask) -> None:
    weights = prunable_weights(model)
    missing = sorted(set(weights) - set(mask))
    extra = sorted(set(mask) - set(weights))
    if missing or extra:
        raise ValueError(f"mask does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, w in weights.items():
        if tuple(mask[name].shape) != tuple(w.shape):
            raise ValueError(f"mask entry {name} has shape {tuple(mask[name].shape)}, the weight has {tuple(w.shape)}")


def count(mask: Mask) -> tuple[int, int]:
    """(remaining, total) over the prunable weights."""
    return sum(int(m.sum()) for m in mask.values()), sum(m.numel() for m in mask.values())


def sparsity_report(mask: Mask) -> dict:
    layers = {name: {"total": m.numel(), "remaining": int(m.sum()), "density": round(float(m.float().mean()), 6)}
              for name, m in mask.items()}
    remaining, total = count(mask)
    return {"total": total, "remaining": remaining, "density": remaining / total, "sparsity": 1 - remaining / total,
            "layers": layers}


def conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """Prunable weight name -> the BatchNorm module that directly normalises that layer's output."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # an untraceable custom model simply gets no BatchNorm zeroing
        return {}
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), _BN):
            src = node.args[0]
            if getattr(src, "op", None) == "call_module" and isinstance(modules.get(src.target), (nn.Conv2d, nn.Linear)) \
                    and len(src.users) == 1:
                pairs[f"{src.target}.weight"] = node.target
    return pairs


def full_mask(model: nn.Module, mask: Mask) -> Mask:
    """The weight mask plus BatchNorm weight/bias entries that zero channels whose filter is fully pruned."""
    out = dict(mask)
    for weight, bn in conv_bn_pairs(model).items():
        alive = mask[weight].flatten(1).any(1)
        if not bool(alive.all()):
            out[f"{bn}.weight"] = alive.clone()
            out[f"{bn}.bias"] = alive.clone()
    return out


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mask) -> None:
    params = dict(model.named_parameters())
    for name, m in full_mask(model, mask).items():
        params[name].mul_(m.to(params[name].dtype))
