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


# ----------------------------------------------------------------------------------------------------
# The weight average (TrainConfig.ema): an EMA of the weights and BatchNorm statistics.

def _ema_steps(kind, decay, n=4, attack=None):
    """n steps of `kind` with a WeightAverage; returns (model, average, the model's state after every step)."""
    from robustlth.training.hooks import WeightAverage
    torch.manual_seed(0)
    model = build_model("cnn6", 0.25, CIFAR10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    average = WeightAverage(model, decay)
    step = kind(model, opt, attack, CPU, hooks=[MaskEnforcer(model, None), average])
    g = torch.Generator().manual_seed(1)
    states = []
    for i in range(n):
        x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        torch.manual_seed(100 + i)
        step(x, y)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return model, average, states, step


def test_weight_average_equals_a_hand_computation(one_thread):
    """avg_0 = initial state; avg_{t+1} = d_t avg_t + (1 - d_t) w_{t+1} with d_t = min(decay, (1 + t) / (10 + t)),
    for every parameter and every floating point buffer (BatchNorm's running mean and variance); integer buffers
    (num_batches_tracked) are copied."""
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in build_model("cnn6", 0.25, CIFAR10).state_dict().items()}
    decay = 0.5  # below the warm-up's (1 + t) / (10 + t) from t = 8 on: both regimes in 12 steps
    model, average, states, _ = _ema_steps(EagerStep, decay, n=12)
    by_hand = {k: v.double() for k, v in init.items() if v.is_floating_point()}
    for t, state in enumerate(states):
        d = min(decay, (1 + t) / (10 + t))
        by_hand = {k: d * v + (1 - d) * state[k].double() for k, v in by_hand.items()}
    got = average.averaged_state()
    bn = [k for k in got if k.endswith("running_mean")]
    assert bn and all(k in got for k in (b.replace("mean", "var") for b in bn))  # BatchNorm statistics averaged
    for k, v in by_hand.items():
        assert torch.allclose(got[k].double(), v, rtol=1e-5, atol=1e-6), k
        if not torch.equal(init[k], model.state_dict()[k]):  # (the normalisation's mean and std are constants)
            assert not torch.allclose(got[k], model.state_dict()[k]), k  # the average is not the live weight
    for k in (k for k in got if k.endswith("num_batches_tracked")):
        assert torch.equal(got[k], model.state_dict()[k]) and int(got[k]) == 12
    assert float(average.updates) == 12


def test_weight_average_in_the_static_step_is_the_eager_one_and_is_restored_around_capture(one_thread):
    """The captured step's arithmetic (run eagerly) updates the average as the eager step does, and the tensors
    the update changes are among those a CUDA-graph capture saves and restores around its warm-up steps."""
    _, eager, _, _ = _ema_steps(EagerStep, 0.9)
    _, static, _, step = _ema_steps(StaticStep, 0.9)
    for k, v in eager.averaged_state().items():
        assert torch.allclose(v.float(), static.averaged_state()[k].float(), rtol=1e-5, atol=1e-6), k
    saved = {id(t) for t in step.state_tensors()}
    assert all(id(t) in saved for t in static.step_state()) and id(static.updates) in saved


def test_training_with_ema_evaluates_saves_and_returns_the_average_and_resumes_exactly(tmp_path, monkeypatch,
                                                                                       one_thread):
    from robustlth.data import TrainLoader
    from robustlth.evaluate import predict
    data = load_dataset(DataConfig(data="synthetic", n_train=100, n_test=20))
    cfg = TINY.replace(epochs=2, ema=0.8)
    torch.manual_seed(0)
    live = build_model("cnn6", 0.25, CIFAR10)
    train(live, data, cfg.replace(ema=0.0), AttackConfig(), CPU)
    torch.manual_seed(0)
    model = build_model("cnn6", 0.25, CIFAR10)
    full = train(model, data, cfg, AttackConfig(), CPU, run=RunDir(tmp_path / "full"))
    assert full.history[-1]["weights"] == "average" and "weights" not in full.history[0]
    assert any(not torch.equal(a, b) for a, b in zip(live.state_dict().values(), model.state_dict().values()))
    ckpt = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    for k, v in ckpt["hooks"]["WeightAverage"]["average"].items():  # the saved model is the average
        assert torch.equal(ckpt["model"][k], v), k
    x, y = data.test.x[:cfg.eval_n].float() / 255, data.test.y[:cfg.eval_n]
    assert full.final["eval_clean"] == pytest.approx(float(predict(model, x, y)[0].float().mean()))

    # Killed in the middle of epoch 2 and resumed: the same average, weights and curve as the uninterrupted run.
    real_epoch = TrainLoader.epoch

    def crash_in_epoch_two(self, epoch):
        for i, batch in enumerate(real_epoch(self, epoch)):
            if epoch == 1 and i == 1:
                raise KeyboardInterrupt
            yield batch
    run = RunDir(tmp_path / "resumed")
    monkeypatch.setattr(TrainLoader, "epoch", crash_in_epoch_two)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(build_model("cnn6", 0.25, CIFAR10), data, cfg, AttackConfig(), CPU, run=run)
    monkeypatch.setattr(TrainLoader, "epoch", real_epoch)
    torch.manual_seed(123)
    resumed_model = build_model("cnn6", 0.25, CIFAR10)  # another init: everything comes from the checkpoint
    resumed = train(resumed_model, data, cfg, AttackConfig(), CPU, run=run)
    for (k, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k
    keys = ("loss", "train_acc", "eval_clean", "lr", "weights")
    assert [[r.get(k) for k in keys] for r in resumed.history] == [[r.get(k) for k in keys] for r in full.history]


def test_ema_follows_the_guard_roll_back(monkeypatch, one_thread):
    """When the overfitting guard rolls the weights back to the previous epoch, the average rolls back with them:
    the model that ends training is the average as it was at that epoch's end."""
    from robustlth.training import trainer as trainer_mod
    data = load_dataset(DataConfig(data="synthetic", n_train=100, n_test=20))
    cfg = TINY.replace(epochs=3, ema=0.8)
    torch.manual_seed(0)
    one_epoch = build_model("cnn6", 0.25, CIFAR10)
    train(one_epoch, data, cfg.replace(epochs=1), AttackConfig(attack="fgsm"), CPU)  # constant LR: the same epoch 1
    accs = iter([0.5, 0.05])
    monkeypatch.setattr(trainer_mod, "robust_flags",
                        lambda *a, **k: torch.full((10,), next(accs)) > torch.linspace(0, 0.99, 10))
    torch.manual_seed(0)
    model = build_model("cnn6", 0.25, CIFAR10)
    result = train(model, data, cfg, AttackConfig(attack="fgsm"), CPU)
    assert result.history[1]["rolled_back"] and result.history[1]["weights"] == "average"
    for (k, a), b in zip(one_epoch.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_ema_is_checked_and_off_by_default():
    from robustlth.config import ConfigError
    from robustlth.training.hooks import TrainingError as HookError, WeightAverage
    assert TrainConfig().ema == 0 and "ema" not in TrainConfig().non_default()  # no run hash changes
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="invalid ema"):
            TrainConfig(ema=bad)
    with pytest.raises(HookError, match="decay"):
        WeightAverage(build_model("cnn6", 0.25, CIFAR10), 0.0)
