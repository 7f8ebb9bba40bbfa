import pytest
import torch
import torch.nn as nn

from robustlth.attacks import ATTACKS, CWPGD, FGSM, NFGSM, PGD, attack_from_spec
from robustlth.datasets import CIFAR10
from robustlth.models import build_model

EPS = 8 / 255


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    model = build_model("cnn6", 0.25, CIFAR10).eval()
    x = torch.rand(16, 3, 32, 32)
    x[:4] = 0.0  # corners of the box exercise the [0, 1] clipping
    x[4:8] = 1.0
    return model, x, torch.randint(0, 10, (16,))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_stays_in_ball_and_box(model_and_batch, name):
    model, x, y = model_and_batch
    x_adv = ATTACKS[name](EPS)(model, x, y)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    bound = 3 * EPS if name == "nfgsm" else EPS  # N-FGSM does not project: noise 2ε plus a step of ε
    assert (x_adv - x).abs().max() <= bound + 1e-6
    assert (x_adv - x).abs().max() > 0


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("start_training", [True, False])
def test_attack_runs_in_its_mode_and_restores(model_and_batch, name, mode, start_training):
    model, x, y = model_and_batch
    seen = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train(start_training)
    try:
        ATTACKS[name](EPS, model_mode=mode)(model, x, y)
    finally:
        handle.remove()
    assert seen and all(s == (mode == "train") for s in seen)
    assert model.training == start_training
    assert all(p.requires_grad for p in model.parameters())
    model.eval()


def test_attack_does_not_touch_weight_grads(model_and_batch):
    model, x, y = model_and_batch
    model.zero_grad(set_to_none=True)
    PGD(EPS, steps=3)(model, x, y)
    assert all(p.grad is None for p in model.parameters())


def test_pgd_matches_torchattacks(model_and_batch):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = model_and_batch
    ours = PGD(EPS, steps=10, step_size=2 / 255, random_start=False)(model, x, y)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=10, random_start=False)(x, y)
    assert model.training is False
    # Same algorithm; only sign flips of float-rounding-sized gradients may differ.
    assert (ours - theirs).abs().max() < 1e-5 or ((ours - theirs).abs() > 1e-5).float().mean() < 1e-3


def test_fgsm_is_one_signed_step():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x, y = torch.full((2, 3, 32, 32), 0.5), torch.tensor([1, 2])
    x_adv = FGSM(EPS)(model, x, y)
    assert torch.allclose((x_adv - x).abs(), torch.full_like(x, EPS), atol=1e-6)


def test_nfgsm_noise_is_wider_than_eps():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x, y = torch.full((64, 3, 32, 32), 0.5), torch.randint(0, 10, (64,))
    assert (NFGSM(EPS)(model, x, y) - x).abs().max() > 1.5 * EPS


def test_restarts_keep_first_success_and_random_start_is_seeded(model_and_batch):
    model, x, y = model_and_batch
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    a = PGD(EPS, steps=2, restarts=3)(model, x, y, g1)
    b = PGD(EPS, steps=2, restarts=3)(model, x, y, g2)
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= EPS + 1e-6


def test_attack_spec_parsing():
    a = attack_from_spec("pgd100x5", EPS)
    assert isinstance(a, PGD) and a.steps == 100 and a.restarts == 5 and a.step_size == pytest.approx(EPS / 4)
    c = attack_from_spec("cw", EPS)
    assert isinstance(c, CWPGD) and c.steps == 30
    for bad in ("pgd", "pgdx", "foo", "cwx"):
        with pytest.raises(ValueError, match="attack"):
            attack_from_spec(bad, EPS)


def test_bad_eps_is_clear():
    with pytest.raises(ValueError, match="eps=2"):
        PGD(2)
