"""The trainer's seams: a step hook's extra loss with a strength in a device tensor (changed between steps, as
a captured step needs), epoch hooks that stop training and whose state survives a resume."""
import pytest
import torch

from robustlth.config import AttackConfig, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.runs import RunDir
from robustlth.training import EpochHook, MaskEnforcer, StepHook, train
from robustlth.training.steps import EagerStep, StaticStep

CPU = torch.device("cpu")
TINY = TrainConfig(epochs=3, batch_size=50, lr=0.05, schedule="constant", eval_n=20, eval_steps=0,
                   lr_reference_batch=None)


class L2Penalty(StepHook):
    """eta * sum of squared weights, eta a device tensor raised in place after every step."""

    def __init__(self):
        self.eta = torch.zeros(())
        self.calls = 0

    def extra_loss(self, model):
        return self.eta * sum((p ** 2).sum() for p in model.parameters() if p.dim() > 1)

    def on_iteration(self, ctx, iteration):
        self.eta.fill_(0.01 * (iteration + 1))
        self.calls += 1

    def state_dict(self):
        return {"eta": float(self.eta), "calls": self.calls}

    def load_state_dict(self, state):
        self.eta.fill_(state["eta"])
        self.calls = state["calls"]


def _steps(kind, hooks, n=3):
    torch.manual_seed(0)
    model = build_model("cnn6", 0.25, CIFAR10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    step = kind(model, opt, None, CPU, hooks=[MaskEnforcer(model, None), *hooks])
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        step(x, y)
        for h in hooks:
            h.on_iteration(None, i)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_extra_loss_with_a_device_tensor_strength_is_the_same_eager_and_static():
    plain = _steps(EagerStep, [])
    eager = _steps(EagerStep, [L2Penalty()])
    static = _steps(StaticStep, [L2Penalty()])  # what a CUDA graph captures, run eagerly
    assert not torch.allclose(plain, eager)  # the penalty acts
    assert torch.allclose(eager, static, atol=1e-6)


class StopAfter(EpochHook):
    def __init__(self, epochs):
        self.epochs, self.seen = epochs, []

    def on_epoch_end(self, ctx, epoch, record):
        self.seen.append(epoch)
        record["hook_saw"] = epoch
        return "stop" if epoch + 1 == self.epochs else None

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = list(state["seen"])


def test_epoch_hook_stops_training_and_hook_state_resumes(tmp_path):
    data = load_dataset(DataConfig(data="synthetic", n_train=100, n_test=20))
    stop = StopAfter(2)
    result = train(build_model("cnn6", 0.25, CIFAR10), data, TINY, AttackConfig(), CPU, epoch_hooks=[stop])
    assert len(result.history) == 2 and "StopAfter" in result.stopped
    assert [r["hook_saw"] for r in result.history] == [0, 1]

    run = RunDir(tmp_path / "run")
    penalty = L2Penalty()
    train(build_model("cnn6", 0.25, CIFAR10), data, TINY.replace(epochs=1), AttackConfig(), CPU, run=run,
          step_hooks=[penalty])
    resumed = L2Penalty()
    train(build_model("cnn6", 0.25, CIFAR10), data, TINY.replace(epochs=2), AttackConfig(), CPU, run=run,
          step_hooks=[resumed])
    assert penalty.calls == 2 and resumed.calls == 4  # the resumed hook carried on from the checkpoint
    assert float(resumed.eta) == pytest.approx(0.04)
