import pytest
import torch

from robustlth.config import AttackConfig, DataConfig, TrainConfig
from robustlth.data import TrainLoader, load_dataset
from robustlth.evaluate import predict, robust_flags
from robustlth.attacks import FGSM, PGD
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.runs import RunDir
from robustlth.training import lr_at, train
from robustlth.training import trainer as trainer_mod

CPU = torch.device("cpu")
SMALL = dict(batch_size=50, eval_n=100, eval_steps=5)


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(data="synthetic", n_train=1000, n_test=200))


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("cnn6", 0.5, CIFAR10)


def test_lr_schedules():
    step = TrainConfig(epochs=10, lr=0.1, milestones=(0.5, 0.75))
    assert lr_at(step, 0, 10) == pytest.approx(0.1)
    assert lr_at(step, 49, 10) == pytest.approx(0.1)
    assert lr_at(step, 50, 10) == pytest.approx(0.01)
    assert lr_at(step, 75, 10) == pytest.approx(0.001)
    warm = TrainConfig(epochs=20, lr=0.1, warmup_epochs=10, warmup_start_lr=0.01)
    assert lr_at(warm, 0, 10) == pytest.approx(0.01)
    assert lr_at(warm, 50, 10) == pytest.approx(0.055)
    assert lr_at(warm, 100, 10) == pytest.approx(0.01)  # warm-up done, first milestone (50 %) reached
    one = TrainConfig(epochs=10, lr=0.2, schedule="onecycle")
    assert lr_at(one, 0, 10) == 0 and lr_at(one, 40, 10) == pytest.approx(0.2) and lr_at(one, 70, 10) == pytest.approx(0.1)
    assert lr_at(TrainConfig(schedule="constant", lr=0.05), 999, 10) == 0.05


@pytest.mark.extended
def test_pgd_is_at_least_as_strong_as_fgsm_on_trained_model(data):
    model = _model()
    train(model, data, TrainConfig(epochs=2, lr=0.05, **SMALL), AttackConfig(attack="none"), CPU)
    x, y = data.test.x[:200].float() / 255, data.test.y[:200]
    g = torch.Generator().manual_seed(0)
    fgsm = robust_flags(model, FGSM(8 / 255), x, y).float().mean()
    pgd = robust_flags(model, PGD(8 / 255, steps=10), x, y, generator=g).float().mean()
    clean = predict(model, x, y)[0].float().mean()
    assert clean > 0.5
    assert pgd <= fgsm <= clean
    assert pgd < clean


@pytest.mark.extended
def test_one_epoch_of_pgd_at_beats_natural_training_under_attack(data):
    cfg = TrainConfig(epochs=1, lr=0.05, schedule="constant", batch_size=50, eval_n=200, eval_steps=10,
                      lr_reference_batch=None)
    natural = train(_model(), data, cfg, AttackConfig(attack="none"), CPU).final
    adversarial = train(_model(), data, cfg, AttackConfig(attack="pgd", attack_steps=5), CPU).final
    assert adversarial["eval_pgd"] > natural["eval_pgd"] + 0.1


@pytest.mark.extended
def test_masked_weights_stay_exactly_zero(data):
    model = _model()
    mask = {n: torch.rand_like(p) > 0.7 for n, p in model.named_parameters() if p.ndim > 1}
    cfg = TrainConfig(epochs=1, lr=0.1, momentum=0.9, weight_decay=5e-4, **SMALL)
    train(model, data, cfg, AttackConfig(attack="fgsm"), CPU, mask=mask)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert torch.all(params[name][~m] == 0), name
        assert torch.any(params[name][m] != 0), name


def test_mask_for_other_model_is_a_clear_error(data):
    with pytest.raises(trainer_mod.TrainingError, match="not a parameter"):
        train(_model(), data, TrainConfig(epochs=1, **SMALL), AttackConfig(), CPU, mask={"nope": torch.ones(3)})


@pytest.mark.extended
def test_resume_reproduces_uninterrupted_run(data, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=2, lr=0.05, **SMALL)
    atk = AttackConfig(attack="fgsm_rs")
    full = _model()
    ref = train(full, data, cfg, atk, CPU, run=RunDir(tmp_path / "full"))

    real_epoch = TrainLoader.epoch

    def crash_in_epoch_two(self, epoch):
        for i, batch in enumerate(real_epoch(self, epoch)):
            if epoch == 1 and i == 3:
                raise KeyboardInterrupt
            yield batch
    run = RunDir(tmp_path / "resumed")
    monkeypatch.setattr(TrainLoader, "epoch", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(_model(), data, cfg, atk, CPU, run=run)
    monkeypatch.setattr(TrainLoader, "epoch", real_epoch)
    resumed_model = _model(seed=123)  # different init: everything must come from the checkpoint
    resumed = train(resumed_model, data, cfg, atk, CPU, run=run)
    for (k, a), b in zip(full.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    assert resumed.history[-1]["eval_pgd"] == ref.history[-1]["eval_pgd"]


@pytest.mark.extended
def test_guard_rolls_back_on_catastrophic_overfitting(data, monkeypatch):
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=50, eval_n=50, eval_steps=0, schedule="constant")
    one_epoch = _model()
    train(one_epoch, data, cfg.replace(epochs=1), AttackConfig(attack="fgsm"), CPU)
    accs = iter([0.5, 0.05, 0.05])
    monkeypatch.setattr(trainer_mod, "robust_flags",
                        lambda *a, **k: torch.full((10,), next(accs)) > torch.linspace(0, 0.99, 10))
    model = _model()
    result = train(model, data, cfg, AttackConfig(attack="fgsm"), CPU)
    assert result.stopped and "catastrophic overfitting at epoch 2" in result.stopped
    assert len(result.history) == 2 and result.history[1]["rolled_back"]
    assert result.final is result.history[0]
    for a, b in zip(one_epoch.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.extended
def test_rewind_state_is_weights_after_k_steps(data, monkeypatch):
    cfg = TrainConfig(epochs=1, lr=0.05, **SMALL)
    result = train(_model(), data, cfg, AttackConfig(), CPU, rewind_iteration=3)
    real_epoch = TrainLoader.epoch

    def first_three(self, epoch):
        for i, b in enumerate(real_epoch(self, epoch)):
            if i == 3:
                return
            yield b
    monkeypatch.setattr(TrainLoader, "epoch", first_three)
    three = _model()
    train(three, data, cfg, AttackConfig(), CPU)  # the same run, stopped after three steps
    for k, v in three.state_dict().items():
        assert torch.equal(result.rewind_state[k], v), k
    assert train(_model(), data, cfg, AttackConfig(), CPU, rewind_iteration=0).rewind_state is not None


@pytest.mark.parametrize("attack,n_steps", [(None, 4), ("pgd", 1)])
def test_static_step_computes_what_the_eager_step_with_torch_sgd_computes(attack, n_steps):
    """The arithmetic the CUDA graph captures (own SGD update, LR in a tensor, masks), checked on CPU. Under
    PGD only one step is compared exactly: the sign of near-zero input gradients amplifies last-bit
    differences of the weights (p - lr*buf vs torch's p + (-lr)*buf) into different adversarial examples."""
    from robustlth.training import EagerStep, MaskEnforcer
    from robustlth.training.steps import StaticStep
    models = [_model(), _model()]
    g = torch.Generator().manual_seed(1)
    mask = {n: (torch.rand(p.shape, generator=g) > 0.5).float() for n, p in models[0].named_parameters() if p.ndim > 1}
    steps = []
    for m, cls in zip(models, (EagerStep, StaticStep)):
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        atk = PGD(8 / 255, steps=3, model_mode="train") if attack else None
        steps.append(cls(m, opt, atk, CPU, hooks=[MaskEnforcer(m, mask)]))
    for i in range(n_steps):
        x, y = torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
        losses = []
        for step in steps:
            step.set_lr(0.1 / (i + 1))
            torch.manual_seed(100 + i)
            losses.append(float(step(x, y)[0]))
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    for name, p in models[1].named_parameters():
        if name in mask:
            assert torch.all(p[mask[name] == 0] == 0)
    for p0, p1 in zip(models[0].parameters(), models[1].parameters()):
        b0, b1 = steps[0].opt.state[p0]["momentum_buffer"], steps[1].opt.state[p1]["momentum_buffer"]
        assert torch.allclose(b0, b1, rtol=1e-5, atol=1e-6)


def test_lr_is_scaled_linearly_from_the_reference_batch_with_warm_up():
    from robustlth.training import scaled_for_batch
    base = TrainConfig(epochs=20, lr=0.1, batch_size=128)
    assert scaled_for_batch(base) == base
    big = scaled_for_batch(base.replace(batch_size=512))
    assert big.lr == pytest.approx(0.4) and big.warmup_epochs == 2 and big.warmup_start_lr == pytest.approx(0.1)
    assert lr_at(big, 0, 10) == pytest.approx(0.1) and lr_at(big, 10, 10) == pytest.approx(0.25)
    assert lr_at(big, 20, 10) == pytest.approx(0.4)
    assert scaled_for_batch(base.replace(batch_size=512, epochs=100)).warmup_epochs == 5
    small = scaled_for_batch(base.replace(batch_size=64))
    assert small.lr == pytest.approx(0.05) and small.warmup_epochs == 0
    given = scaled_for_batch(base.replace(batch_size=256, warmup_epochs=3, warmup_start_lr=0.01))
    assert (given.lr, given.warmup_epochs, given.warmup_start_lr) == (pytest.approx(0.2), 3, pytest.approx(0.02))
    assert scaled_for_batch(base.replace(batch_size=512, lr_reference_batch=None)).lr == 0.1
