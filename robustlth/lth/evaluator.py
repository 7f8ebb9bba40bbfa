"""The early-stopping iteration: validation loss every N iterations, as a trainer step hook (host side, not
per step), keeping the weights at the minimum so the test set is measured there."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..evaluate import predict
from ..training.hooks import StepHook


class EarlyStopEvaluator(StepHook):
    """Evaluates `model` on (x, y) after every `every` optimiser steps; `best_iteration` is the iteration of
    minimum validation loss and `best_state` the weights there. Its state is checkpointed, so a resumed run
    keeps the evaluations it already made."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, every: int):
        self.model, self.x, self.y, self.every = model, x, y, every
        self.records: list[dict] = []
        self.best_iteration: Optional[int] = None
        self.best_state: Optional[dict] = None

    def on_iteration(self, ctx, iteration: int) -> None:
        """After optimiser step `iteration` (0-based); records count the steps done (iteration + 1)."""
        if (iteration + 1) % self.every == 0:
            self.evaluate(iteration + 1)

    def finish(self, iteration: int) -> None:
        """Evaluate after `iteration` steps (the last) too, unless that was done."""
        if not self.records or self.records[-1]["iteration"] != iteration:
            self.evaluate(iteration)

    def evaluate(self, iteration: int) -> None:
        flags, loss = predict(self.model, self.x, self.y)
        record = {"iteration": iteration, "val_loss": float(loss) / len(self.y),
                  "val_acc": float(flags.float().mean())}
        self.records.append(record)
        if self.best_iteration is None or record["val_loss"] < self.best()["val_loss"]:
            self.best_iteration = iteration
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def best(self) -> dict:
        return next(r for r in self.records if r["iteration"] == self.best_iteration)

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records], "best_iteration": self.best_iteration,
                "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state["records"]]
        self.best_iteration, self.best_state = state["best_iteration"], state["best_state"]
