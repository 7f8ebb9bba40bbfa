"""Pluggable optimiser and loss, and hook state in checkpoints: Adam trains and resumes exactly, label smoothing
is the loss it says, every hook's state (the caller's and the built-in guard's and rewind weights) goes through
one `hooks` mapping, and the static (captured) step says which optimisers it runs."""
import pytest
import torch
import torch.nn.functional as F

from robustlth.attacks import PGD
from robustlth.config import AttackConfig, ConfigError, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.datasets import CIFAR10
from robustlth.errors import FileFormatError
from robustlth.models import build_model
from robustlth.optim import LOSSES, OPTIMIZERS
from robustlth.runs import RunDir
from robustlth.training import EagerStep, EpochHook, MaskEnforcer, RunContext, StepHook, make_step, train
from robustlth.training.checkpoint import load_checkpoint
from robustlth.training.hooks import TrainingError, hook_keys
from robustlth.training.steps import StaticStep
from robustlth.training.trainer import OverfitGuard

CPU = torch.device("cpu")
# A constant LR: a run of 2 epochs continued to 3 follows the schedule of 3.
TINY = TrainConfig(epochs=3, batch_size=50, lr=0.01, schedule="constant", eval_n=20, eval_steps=1, optimizer="adam")
TIMINGS = ("train_time", "eval_time", "cpu_s", "load_avg")  # measured, not computed


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(data="synthetic", n_train=200, n_test=40))


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("cnn6", 0.25, CIFAR10)


def _untimed(history):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in history]


def test_config_names_optimiser_and_loss_from_their_registries():
    assert {"sgd", "adam"} <= set(OPTIMIZERS.names()) and "ce" in LOSSES
    with pytest.raises(ConfigError, match="invalid optimizer='rmsprop': expected one of sgd, adam"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="invalid loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ConfigError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    assert TrainConfig().identity() == {}  # defaults: run hashes are unchanged


@pytest.mark.extended
def test_adam_trains_and_resumes_exactly(data, tmp_path):
    atk = AttackConfig()
    full = _model()
    ref = train(full, data, TINY, atk, CPU, run=RunDir(tmp_path / "full"))

    run = RunDir(tmp_path / "resumed")
    train(_model(), data, TINY.replace(epochs=2), atk, CPU, run=run)
    ckpt = torch.load(run.file("checkpoint.pt"), weights_only=True)
    assert {"exp_avg", "exp_avg_sq"} <= set(next(iter(ckpt["optimizer"]["state"].values())))  # Adam trained
    resumed_model = _model(seed=123)  # a different init: everything must come from the checkpoint
    resumed = train(resumed_model, data, TINY, atk, CPU, run=run)
    for (k, a), b in zip(full.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k
    assert _untimed(resumed.history) == _untimed(ref.history)


def test_label_smoothing_is_the_loss_a_hand_computation_gives(data):
    eps = 0.2
    logits, y = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    logp = logits.log_softmax(1)
    by_hand = ((1 - eps) * -logp[torch.arange(16), y] + eps * -logp.mean(1)).mean()
    assert torch.allclose(LOSSES["ce"](TrainConfig(label_smoothing=eps))(logits, y), by_hand)
    assert torch.equal(LOSSES["ce"](TrainConfig())(logits, y), F.cross_entropy(logits, y))

    # In training: one batch of every training image, so the epoch's loss is the batch's (in any order).
    cfg = TrainConfig(epochs=1, batch_size=200, eval_n=20, eval_steps=0, label_smoothing=eps)
    x_all, y_all = data.train.x.float() / 255, data.train.y
    with torch.no_grad():
        logp = _model().train()(x_all).log_softmax(1)
    nll, uniform = -logp[torch.arange(len(y_all)), y_all].mean(), -logp.mean()
    for smoothing in (eps, 0.0):
        record = train(_model(), data, cfg.replace(label_smoothing=smoothing), AttackConfig(), CPU,
                       augment=False).history[0]
        assert record["loss"] == pytest.approx(float((1 - smoothing) * nll + smoothing * uniform), rel=1e-5)
    assert abs(float(nll - uniform)) > 1e-3  # the two losses differ measurably


class Counter(StepHook):
    def __init__(self):
        self.steps = 0

    def on_iteration(self, ctx, iteration):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class Seen(EpochHook):
    key = "seen-epochs"

    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, ctx, epoch, record):
        self.epochs.append(epoch)

    def state_dict(self):
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state):
        self.epochs = list(state["epochs"])


def test_every_hook_state_goes_through_one_mapping_and_round_trips(data, tmp_path):
    run = RunDir(tmp_path / "run")
    cfg = TINY.replace(epochs=1, optimizer="sgd")
    counters, seen = [Counter(), Counter()], Seen()
    result = train(_model(), data, cfg, AttackConfig(attack="fgsm"), CPU, run=run, step_hooks=counters,
                   epoch_hooks=[seen], rewind_iteration=2)
    hooks = torch.load(run.file("checkpoint.pt"), weights_only=True)["hooks"]
    assert set(hooks) == {"Counter", "Counter#2", "RewindCapture", "Evaluation", "OverfitGuard", "seen-epochs"}
    assert hooks["Counter"] == hooks["Counter#2"] == {"steps": 4} and hooks["seen-epochs"] == {"epochs": [0]}
    assert hooks["OverfitGuard"] == {"best": result.history[0]["guard_pgd"]}
    for k, v in result.rewind_state.items():
        assert torch.equal(hooks["RewindCapture"]["weights"][k], v), k

    # The guard's state loads back (its rolled-back weights are the checkpoint's), and so do the caller's.
    model = _model(seed=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(8, 3, 32, 32)
    guard = OverfitGuard(model, x, torch.zeros(8, dtype=torch.long), 8 / 255, 0, "fp32", RunContext(CPU))
    fresh = [Counter(), Counter(), Seen()]
    loop = load_checkpoint(run.file("checkpoint.pt"), model, opt, {"OverfitGuard": guard, **hook_keys(fresh)})
    assert loop["epoch"] == 1 and guard.best == result.history[0]["guard_pgd"]
    for k, v in model.state_dict().items():
        assert torch.equal(guard.last_good[k], v), k
    assert [h.state_dict() for h in fresh] == [{"steps": 4}, {"steps": 4}, {"epochs": [0]}]

    # Resumed past the rewind point with rewind.pt gone: the checkpoint still has the rewind weights.
    run.file("rewind.pt").unlink()
    resumed = train(_model(), data, cfg.replace(epochs=2), AttackConfig(attack="fgsm"), CPU, run=run,
                    step_hooks=[Counter(), Counter()], epoch_hooks=[seen], rewind_iteration=2)
    assert run.file("rewind.pt").exists() and seen.epochs == [0, 1]
    for k, v in result.rewind_state.items():
        assert torch.equal(resumed.rewind_state[k], v), k


def test_an_older_checkpoint_is_one_clear_error(data, tmp_path):
    run = RunDir(tmp_path / "run")
    train(_model(), data, TINY.replace(epochs=1), AttackConfig(), CPU, run=run)
    ckpt = torch.load(run.file("checkpoint.pt"), weights_only=True)
    old = {**{k: v for k, v in ckpt.items() if k != "hooks"}, "format": "robustlth-checkpoint-v2", "guard_best": None}
    torch.save(old, run.file("checkpoint.pt"))
    with pytest.raises(FileFormatError, match="is not a robustlth-checkpoint-v3 file"):
        train(_model(), data, TINY.replace(epochs=2), AttackConfig(), CPU, run=run)


def test_repeated_hook_keys_are_numbered_and_a_clash_is_an_error():
    class Named(StepHook):
        key = "Counter#2"
    assert list(hook_keys([Counter(), Seen(), Counter()])) == ["Counter", "seen-epochs", "Counter#2"]
    with pytest.raises(TrainingError, match="share the checkpoint key 'Counter#2'"):
        hook_keys([Counter(), Counter(), Named()])


def _two_steps(opt_name):
    models = [_model(), _model()]
    g = torch.Generator().manual_seed(1)
    mask = {n: (torch.rand(p.shape, generator=g) > 0.5).float() for n, p in models[0].named_parameters() if p.ndim > 1}
    opts = [OPTIMIZERS[opt_name](m.parameters(), TrainConfig(lr=0.05, weight_decay=5e-4)) for m in models]
    return models, opts, mask, g


def test_static_step_runs_sgd_as_torch_does_and_refuses_other_optimisers():
    """The captured arithmetic, run eagerly: SGD matches torch's; Adam is refused by the static step, and a CUDA
    graph asked for with Adam falls back to the eager step with one line saying why."""
    models, opts, mask, g = _two_steps("sgd")
    steps = [cls(m, o, PGD(8 / 255, steps=2, model_mode="train"), CPU, hooks=[MaskEnforcer(m, mask)])
             for cls, m, o in zip((EagerStep, StaticStep), models, opts)]
    x, y = torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    for step in steps:
        step.set_lr(0.05)
        torch.manual_seed(3)
        step(x, y)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name

    models, opts, mask, _ = _two_steps("adam")
    with pytest.raises(ValueError, match="captures one torch.optim.SGD parameter group, not Adam"):
        StaticStep(models[0], opts[0], None, CPU)
    said = []
    step = make_step(models[0], opts[0], None, CPU, cuda_graphs=True, log=said.append)
    assert type(step) is EagerStep and said == ["CUDA graphs off: it captures one torch.optim.SGD parameter group, "
                                                "not Adam; training with the eager step"]
    with pytest.raises(ValueError, match="need a CUDA device"):  # SGD is captured (on CUDA only)
        make_step(models[1], torch.optim.SGD(models[1].parameters(), lr=0.1), None, CPU, cuda_graphs=True)
