"""Training steps, the product's hot path: one optimisation step on a batch, adversarial when an attack is given.

`EagerStep` runs the step op by op (any device, precision, optimiser; torch.compile). `CudaGraphStep` captures
the whole step once — the attack (PGD-K, or a single-step N-FGSM, FGSM-RS or FGSM: one input-gradient pass)
with its random start drawn from the device generator, the forward and backward passes, the step hooks (a weight
average's update among them) and the SGD update — as a CUDA graph and replays it per batch, so a PGD-10
step costs a handful of launches instead of thousands. The learning rate lives in a device tensor, so a
schedule never forces a re-capture. Only SGD is captured (its update is written out here); for any other
optimiser `make_step` says so and runs the eager step. Both return the loss and logits as device tensors: no
host synchronisation. Capture is gated to CUDA: `CudaGraphStep` refuses any other device, the trainer asks for it
only on CUDA (`device.resolve_cuda_graphs`: on by default there, off elsewhere, and an explicit request on a CPU is
one configuration error), so on a CPU every attack runs the eager step.

Step hooks (`hooks.StepHook`, mask enforcement among them) add loss terms and gradient/weight transforms; a
captured step records them once. `model` is what the training forward pass runs through
(DistributedDataParallel under data parallelism); the attack runs on `attack_model`, the bare module, so
crafting examples never synchronises gradients across processes.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import autocast
from .hooks import StepHook, overrides

WARMUP_STEPS = 3  # eager steps before capture (cuDNN autotuning, lazy allocations); their effects are undone
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Step:
    """What every step shares: the loss, and the step hooks sorted by what they implement, so the step calls
    only what does something."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, attack, device: torch.device,
                 precision: str, hooks: Sequence[StepHook], attack_model: Optional[nn.Module],
                 loss_fn: LossFn):
        self.model, self.opt, self.attack, self.device, self.precision = model, opt, attack, device, precision
        self.loss_fn = loss_fn
        self.hooks = list(hooks)
        self.loss_hooks = [h for h in hooks if overrides(h, "extra_loss")]
        self.grad_hooks = [h for h in hooks if overrides(h, "after_backward")]
        self.update_hooks = [h for h in hooks if overrides(h, "after_update")]
        self.hook_model = attack_model if attack_model is not None else model  # the bare module

    def _loss_and_logits(self, x: torch.Tensor, y: torch.Tensor, attack):
        with autocast(self.device, self.precision):
            if attack is not None:
                x = attack(self.hook_model, x, y)
            out = self.model(x)
            loss = self.loss_fn(out.float(), y)
        for hook in self.loss_hooks:
            extra = hook.extra_loss(self.hook_model)
            if extra is not None:
                loss = loss + extra
        return loss, out

    def _after_update(self) -> None:
        for hook in self.update_hooks:
            hook.after_update(self.hook_model)


class EagerStep(_Step):
    """The step as ordinary PyTorch calls: any optimiser; the CPU path and the fallback on CUDA."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, attack, device: torch.device,
                 precision: str = "fp32", scaler=None, hooks: Sequence[StepHook] = (),
                 attack_model: Optional[nn.Module] = None, loss_fn: LossFn = F.cross_entropy):
        super().__init__(model, opt, attack, device, precision, hooks, attack_model, loss_fn)
        self.scaler = scaler

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        loss, out = self._loss_and_logits(x, y, self.attack)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        for hook in self.grad_hooks:
            hook.after_backward(self.hook_model)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self._after_update()
        return loss.detach(), out.detach()


class StaticStep(_Step):
    """The step on static input buffers with the LR in a device tensor: what `CudaGraphStep` captures.

    It computes what `EagerStep` with `torch.optim.SGD` (momentum, weight decay, no Nesterov) computes, and
    keeps its momentum buffers in the optimiser's state, so checkpoints, resume and the eager path stay
    interchangeable. Run eagerly (any device) it lets the captured arithmetic be checked without a GPU.
    """

    def __init__(self, model: nn.Module, opt: torch.optim.SGD, attack, device: torch.device,
                 precision: str = "fp32", hooks: Sequence[StepHook] = (), loss_fn: LossFn = F.cross_entropy):
        reason = self.unsupported(opt)
        if reason:
            raise ValueError(f"a static step cannot run this optimiser: {reason}")
        super().__init__(model, opt, attack, device, precision, hooks, None, loss_fn)
        group = opt.param_groups[0]
        self.lr = torch.tensor(float(group["lr"]), device=device)
        self._lr_value = float(group["lr"])
        self.x: Optional[torch.Tensor] = None
        self.x_adv: Optional[torch.Tensor] = None  # the last batch's training inputs (adversarial or clean)

    @staticmethod
    def unsupported(opt: torch.optim.Optimizer) -> Optional[str]:
        """Why the written-out update cannot stand in for `opt` (None: it can)."""
        if type(opt) is not torch.optim.SGD or len(opt.param_groups) != 1:
            return f"it captures one torch.optim.SGD parameter group, not {type(opt).__name__}"
        group = opt.param_groups[0]
        if group.get("nesterov") or group.get("dampening") or group.get("maximize"):
            return "it captures SGD without Nesterov, dampening or maximize"
        return None

    def set_lr(self, lr: float) -> None:
        self.opt.param_groups[0]["lr"] = lr  # what a checkpoint records
        if lr != self._lr_value:
            self.lr.fill_(lr)  # an asynchronous device write, read by the next step
            self._lr_value = lr

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        self._load(x, y)
        return self.run()

    def _load(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.x is None:
            self.bind(x, y)
        elif x.shape != self.x.shape or y.shape != self.y.shape:
            raise ValueError(f"a static step needs batches of shape {tuple(self.x.shape)}, got {tuple(x.shape)}")
        self.x.copy_(x)
        self.y.copy_(y)

    def bind(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Allocate the static buffers for batches like (x, y) and collect what the update touches."""
        self.x, self.y = x.clone(), y.clone()
        group = self.opt.param_groups[0]
        self.params = [p for p in group["params"] if p.requires_grad]
        self.buffers = []
        if group["momentum"]:
            for p in self.params:  # a zero buffer gives exactly torch's first step (buffer = gradient)
                state = self.opt.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.buffers = [self.opt.state[p]["momentum_buffer"] for p in self.params]

    def run(self):
        """One step on the static buffers."""
        loss, out = self._loss_and_logits(self.x, self.y, self._attack)
        grads = list(torch.autograd.grad(loss, self.params))
        if self.grad_hooks:  # hooks transform `p.grad`
            for p, g in zip(self.params, grads):
                p.grad = g
            for hook in self.grad_hooks:
                hook.after_backward(self.hook_model)
            grads = [p.grad for p in self.params]
            for p in self.params:
                p.grad = None
        group = self.opt.param_groups[0]
        with torch.no_grad():  # torch.optim.SGD's update, with the LR read from a device tensor
            if group["weight_decay"]:
                torch._foreach_add_(grads, self.params, alpha=group["weight_decay"])
            if self.buffers:
                torch._foreach_mul_(self.buffers, group["momentum"])
                torch._foreach_add_(self.buffers, grads)
                grads = self.buffers
            torch._foreach_sub_(self.params, torch._foreach_mul(grads, self.lr))
        self._after_update()
        return loss.detach(), out.detach()

    def _attack(self, model, x, y):
        self.x_adv = self.attack(model, x, y) if self.attack is not None else x
        return self.x_adv

    def state_tensors(self) -> list[torch.Tensor]:
        """Everything a step changes: weights, BatchNorm statistics, momentum buffers, and the step hooks' own
        state (a weight average)."""
        hooks = [t for h in self.hooks for t in h.step_state()]
        return [p.data for p in self.model.parameters()] + list(self.model.buffers()) + self.buffers + hooks


class CudaGraphStep(StaticStep):
    """The whole step as one CUDA graph, captured on the first batch and replayed on every later one.

    Batches must keep one shape (the loaders drop the last partial batch).
    """

    def __init__(self, model: nn.Module, opt: torch.optim.SGD, attack, device: torch.device,
                 precision: str = "fp32", hooks: Sequence[StepHook] = (), loss_fn: LossFn = F.cross_entropy):
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"CUDA graphs support fp32 and bf16, not {precision}")
        super().__init__(model, opt, attack, device, precision, hooks, loss_fn)
        self.graph: Optional[torch.cuda.CUDAGraph] = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        self._load(x, y)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.loss, self.out

    def _capture(self) -> None:
        # Warm up on a side stream, as CUDA graphs require, then undo every effect of the warm-up steps.
        saved = [t.detach().clone() for t in self.state_tensors()]
        rng = torch.cuda.get_rng_state(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.run()
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for t, s in zip(self.state_tensors(), saved):
                t.copy_(s)
        torch.cuda.set_rng_state(rng, self.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.out = self.run()


def make_step(model: nn.Module, opt: torch.optim.Optimizer, attack, device: torch.device,
              precision: str = "fp32", scaler=None, cuda_graphs: bool = False, hooks: Sequence[StepHook] = (),
              attack_model: Optional[nn.Module] = None, loss_fn: LossFn = F.cross_entropy,
              log: Optional[Callable[[str], None]] = None):
    """The training step for these settings: captured as a CUDA graph when asked and the optimiser allows it
    (else eager, with one line to `log` saying why).

    `hooks` are the step hooks, mask enforcement first. `attack_model` (eager steps only) is the bare module
    the attack runs on when `model` is a DistributedDataParallel.
    """
    if cuda_graphs:
        if attack_model is not None:
            raise ValueError("CUDA graphs do not support a separate attack model (data parallelism)")
        reason = StaticStep.unsupported(opt)
        if reason is None:
            return CudaGraphStep(model, opt, attack, device, precision, hooks, loss_fn)
        if log is not None:
            log(f"CUDA graphs off: {reason}; training with the eager step")
    return EagerStep(model, opt, attack, device, precision, scaler, hooks, attack_model, loss_fn)
