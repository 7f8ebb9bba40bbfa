"""The trainer's seams: step hooks run inside every training step, epoch hooks after every epoch.

Step hooks sit on the hot path, so they must not synchronise the host per step. Values that change during
training live in device tensors that `on_iteration` updates in place, so a captured step (CUDA graph) reads
the new value without a re-capture.
"""
from __future__ import annotations

from typing import Optional

import torch


class StepHook:
    """Runs inside every training step (the hot path): must not sync the host per step."""

    def extra_loss(self, model) -> Optional[torch.Tensor]:
        """A term added to the training loss before backward (None: nothing)."""
        return None

    def after_backward(self, model) -> None:
        """Gradient transforms (e.g. zero the gradients of pruned weights)."""

    def after_update(self, model) -> None:
        """Weight transforms (e.g. re-apply masks)."""

    def on_iteration(self, ctx, iteration: int) -> None:
        """Host side, after each optimiser step; cheap. Change device tensors in place (tensor.fill_)."""

    def state_dict(self) -> dict:
        """Saved in the checkpoint, for exact resume."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EpochHook:
    def on_epoch_end(self, ctx, epoch: int, record: dict) -> Optional[str]:
        """Return "stop" to end training."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
