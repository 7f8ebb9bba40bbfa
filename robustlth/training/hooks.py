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

    def step_state(self) -> list[torch.Tensor]:
        """Tensors of its own that the step changes (e.g. a weight average): a captured step saves and restores
        them around its warm-up steps, as it does the weights."""
        return []


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


class WeightAverage(StepHook):
    """An exponential moving average (EMA) of the weights, updated inside every step after the optimiser's
    update (and after the mask and every other weight transform, so pruned weights stay zero in it too).

    BatchNorm: its running statistics are buffers of the model, and the average keeps an EMA of every floating
    point buffer with the same decay as the weights (integer buffers, BatchNorm's `num_batches_tracked`, are
    copied). No pass over the data is needed, so the averaged model costs nothing at the end of training; its
    statistics are those the averaged weights saw (they move as slowly as the weights do). Where this matters the
    averaged model can still be re-calibrated by the caller; the trainer does not.

    The decay of update t (0-based) is min(decay, (1 + t) / (10 + t)) (TensorFlow's `num_updates` warm-up), so
    the random initial weights leave the average within the first steps even of a short run. The count and the
    decay are device tensors: a captured step (`CudaGraphStep`) records the update once, and `step_state` lists
    every tensor the update changes so its warm-up steps can be undone. The average's state (and the count) go
    into every checkpoint under this hook's key, so a resumed run continues exactly.

    The average must be built after the model is on its device (it holds the model's own tensors).
    """

    key = "WeightAverage"
    WARMUP = 10.0

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise TrainingError(f"invalid weight-average decay {decay!r}: expected a number in (0, 1)")
        self.model, self.decay = model, float(decay)
        named = list(model.named_parameters()) + list(model.named_buffers())
        self.names = [n for n, t in named if t.is_floating_point()]
        self.live = [t for _, t in named if t.is_floating_point()]
        self.int_names = [n for n, t in named if not t.is_floating_point()]
        self.int_live = [t for _, t in named if not t.is_floating_point()]
        if not self.live:
            raise TrainingError("the model has no floating point weights to average")
        with torch.no_grad():
            self.avg = [t.detach().clone() for t in self.live]
            self.int_avg = [t.detach().clone() for t in self.int_live]
        self.updates = torch.zeros((), dtype=torch.float32, device=self.live[0].device)
        self._epoch_start = self._copy()

    # --- inside the step (captured once on CUDA) ---
    def decay_tensor(self) -> torch.Tensor:
        """This update's decay, on the device: min(decay, (1 + t) / (10 + t))."""
        return torch.clamp((1 + self.updates) / (self.WARMUP + self.updates), max=self.decay)

    @torch.no_grad()
    def after_update(self, model: nn.Module) -> None:
        d = self.decay_tensor()
        torch._foreach_mul_(self.avg, d)
        torch._foreach_add_(self.avg, torch._foreach_mul([t.detach() for t in self.live], 1 - d))
        for a, t in zip(self.int_avg, self.int_live):
            a.copy_(t)
        self.updates += 1

    def step_state(self) -> list[torch.Tensor]:
        return self.avg + self.int_avg + [self.updates]

    # --- between epochs ---
    def averaged_state(self) -> dict[str, torch.Tensor]:
        """The averaged model as a state_dict-like mapping (parameters and buffers by name)."""
        return dict(zip(self.names + self.int_names, self.avg + self.int_avg))

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's own weights and buffers with the averaged ones (twice: back as they were)."""
        for live, avg in ((self.live, self.avg), (self.int_live, self.int_avg)):
            for t, a in zip(live, avg):
                keep = t.detach().clone()
                t.copy_(a)
                a.copy_(keep)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Put the averaged weights and buffers into the model (the end of training)."""
        for t, a in zip(self.live + self.int_live, self.avg + self.int_avg):
            t.copy_(a)

    def _copy(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in self.step_state()]

    def mark_epoch(self) -> None:
        """Remember the average at this epoch's end (the catastrophic-overfitting guard may roll back to it)."""
        self._epoch_start = self._copy()

    @torch.no_grad()
    def roll_back(self) -> None:
        """The average as it was at the last `mark_epoch` (the guard rolled the weights back to that epoch)."""
        for t, s in zip(self.step_state(), self._epoch_start):
            t.copy_(s)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "average": self.averaged_state()}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        saved = state["average"]
        if set(saved) != set(self.names + self.int_names):
            raise TrainingError("the checkpoint's weight average does not hold this model's parameters and buffers")
        for name, t in self.averaged_state().items():
            t.copy_(saved[name])
        self.updates.copy_(state["updates"])
        self.decay = float(state["decay"])
        self.mark_epoch()  # the checkpoint was written at an epoch's end


class AveragedEpochHook(EpochHook):
    """Runs an epoch hook (the per-epoch evaluation) on the averaged weights, then puts the live ones back; it
    keeps the wrapped hook's checkpoint key and state."""

    def __init__(self, average: WeightAverage, inner: EpochHook):
        self.average, self.inner = average, inner
        self.key = inner.key or type(inner).__name__

    def on_epoch_end(self, ctx, epoch: int, record: dict) -> Optional[str]:
        self.average.swap()
        try:
            ctx.broadcast_buffers(self.average.model)  # one averaged model on every process
            return self.inner.on_epoch_end(ctx, epoch, record)
        finally:
            self.average.swap()

    def start(self, ctx, done_iterations: int) -> None:
        self.inner.start(ctx, done_iterations)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class AverageAtEnd(EpochHook):
    """The last epoch hook of a run with a weight average: follows the guard's roll-back, and when training ends
    (the last epoch, or any hook stopped it) puts the averaged weights into the model, so the final evaluation,
    the last checkpoint and the caller all get the averaged model (record["weights"] = "average")."""

    key = "WeightAverage.end"

    def __init__(self, average: WeightAverage, epochs: int):
        self.average, self.epochs = average, epochs

    def on_epoch_end(self, ctx, epoch: int, record: dict) -> Optional[str]:
        if record.get("rolled_back"):
            self.average.roll_back()
        if record.get("stopped") or epoch + 1 >= self.epochs:
            self.average.copy_to_model()
            ctx.broadcast_buffers(self.average.model)
            record["weights"] = "average"
        else:
            self.average.mark_epoch()
        return None
