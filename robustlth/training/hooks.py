"""The trainer's seams. A `StepHook` adds to every optimisation step (the hot path: extra loss terms,
gradient and weight transforms); an `EpochHook` runs after every epoch (evaluation, guards, callers' hooks).
The trainer's own hooks (mask enforcement, rewind capture, evaluation, the overfitting guard) are ordinary
hooks in the same lists.

Step hooks must not synchronise the host per step. A value that changes during training (a penalty's
strength, say) lives in a device tensor the hook changes in place in `on_iteration`, so a captured step
(`StaticStep`, `CudaGraphStep`) records `extra_loss` once and still sees every new value.

Every hook's state goes into the checkpoint through `state_dict`, under its key (`hook_keys`), so a resumed
run continues exactly.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..errors import RobustLTHError

Mask = dict[str, torch.Tensor]


class TrainingError(RobustLTHError, RuntimeError):
    pass


class Hook:
    """What every hook has: a checkpoint key, its state, and a start once that state is restored."""

    key: Optional[str] = None  # its name in a checkpoint's `hooks` (default: its class name)

    def start(self, ctx, done_iterations: int) -> None:
        """Before the first epoch this process trains, after a resume restored every state."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class StepHook(Hook):
    """Runs inside every training step (the hot path): must not sync the host per step."""

    def extra_loss(self, model: nn.Module) -> Optional[torch.Tensor]:
        """A term added to the training loss before backward (None: nothing)."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Gradient transforms, on `p.grad` (e.g. zero the gradients of pruned weights)."""

    def after_update(self, model: nn.Module) -> None:
        """Weight transforms after the optimiser step (e.g. re-apply masks)."""

    def on_iteration(self, ctx, iteration: int) -> None:
        """Host side, after optimiser step `iteration` (0-based); cheap; change device tensors in place."""


class EpochHook(Hook):
    """Runs after every epoch with the epoch's record; it may add entries to the record."""

    def on_epoch_end(self, ctx, epoch: int, record: dict) -> Optional[str]:
        """Returns "stop" to end training after this epoch."""
        return None


def overrides(hook, method: str) -> bool:
    """Whether `hook` implements `method` itself, so the step skips the base class's no-ops."""
    base = StepHook if isinstance(hook, StepHook) else EpochHook
    return getattr(type(hook), method) is not getattr(base, method, None)


def hook_keys(hooks: Sequence[Hook]) -> dict[str, Hook]:
    """Each hook under its key (`key`, else its class name); a repeated key is numbered from its second use
    on ("L2Penalty#2"), so adding or removing hooks of other kinds never renames a hook's saved state."""
    keyed: dict[str, Hook] = {}
    uses: Counter = Counter()
    for hook in hooks:
        name = hook.key or type(hook).__name__
        uses[name] += 1
        key = name if uses[name] == 1 else f"{name}#{uses[name]}"
        if key in keyed:
            raise TrainingError(f"two hooks share the checkpoint key {key!r}; give one of them another `key`")
        keyed[key] = hook
    return keyed


class MaskEnforcer(StepHook):
    """Keeps masked entries exactly zero: gradients are masked before the update (so momentum and weight
    decay never see them) and weights after it. Under data parallelism every process enforces the mask.
    It must come before other step hooks, so theirs see masked gradients and weights."""

    def __init__(self, model: nn.Module, mask: Optional[Mask]):
        params = dict(model.named_parameters())
        self.params: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        for name, m in (mask or {}).items():
            if name not in params:
                raise TrainingError(f"mask entry {name!r} is not a parameter of this model; the mask was made "
                                    "for a different architecture")
            if tuple(m.shape) != tuple(params[name].shape):
                raise TrainingError(f"mask entry {name!r} has shape {tuple(m.shape)}, the parameter has "
                                    f"{tuple(params[name].shape)}: the mask was made for another model or width")
            self.params.append(params[name])
            self.masks.append(m.to(device=params[name].device, dtype=params[name].dtype))
        self.apply_to_weights()

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.masks)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        grads, masks = [], []
        for p, m in zip(self.params, self.masks):
            if p.grad is not None:
                grads.append(p.grad)
                masks.append(m)
        if grads:
            torch._foreach_mul_(grads, masks)

    def after_backward(self, model: nn.Module) -> None:
        self.apply_to_grads()

    def after_update(self, model: nn.Module) -> None:
        self.apply_to_weights()
