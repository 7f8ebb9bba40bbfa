"""The CUDA-graph training step against the eager one (marked `gpu`: runs where CUDA is present, skips elsewhere).

With the same seed the captured step must give the same adversarial examples and loss curve as the eager
step (within bf16 tolerance), keep pruned weights at zero, follow LR changes without re-capture, and let a
run resume from its checkpoint.
"""
import copy

import pytest
import torch

from robustlth.attacks import PGD
from robustlth.config import AttackConfig, DataConfig, TrainConfig
from robustlth.data import load_dataset
from robustlth.device import autocast
from robustlth.datasets import CIFAR10
from robustlth.models import build_model
from robustlth.runs import RunDir
from robustlth.training import CudaGraphStep, EagerStep, MaskEnforcer, train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

EPS = 8 / 255


@pytest.fixture(scope="module")
def cuda():
    return torch.device("cuda")


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(data="synthetic", n_train=1024, n_test=256))


def _model(cuda):
    torch.manual_seed(0)
    return build_model("resnet18", 0.25, CIFAR10).to(cuda, memory_format=torch.channels_last)


def _step(cls, model, cuda, precision, mask=None, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return cls(model, opt, PGD(EPS, steps=10, model_mode="train"), cuda, precision,
               hooks=[MaskEnforcer(model, mask)])


def _batches(cuda, n=6, batch=64):
    g = torch.Generator().manual_seed(2)
    return [(torch.rand(batch, 3, 32, 32, generator=g).to(cuda).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (batch,), generator=g).to(cuda)) for _ in range(n)]


@pytest.mark.parametrize("precision,agree", [("fp32", 0.99), ("bf16", 0.9)])
def test_graph_step_gives_the_eager_adversarial_examples(cuda, precision, agree):
    eager_model = _model(cuda)
    graph_model = copy.deepcopy(eager_model)
    x, y = _batches(cuda, n=1)[0]
    step = _step(CudaGraphStep, graph_model, cuda, precision)
    torch.cuda.manual_seed(5)
    step(x, y)
    torch.cuda.manual_seed(5)
    with autocast(cuda, precision):
        x_adv = PGD(EPS, steps=10, model_mode="train")(eager_model, x, y)
    assert float(((x_adv - step.x_adv).abs() <= 1e-6).float().mean()) >= agree
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6 and float((step.x_adv - x).abs().max()) <= EPS + 1e-6


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_step_follows_the_eager_losses_and_lr_schedule(cuda, precision):
    """Weights are compared after the first step: later, the sign of near-zero input gradients turns last-bit
    differences into different adversarial examples, so only the loss curve is compared (within tolerance)."""
    eager_model = _model(cuda)
    graph_model = copy.deepcopy(eager_model)
    eager, graphed = _step(EagerStep, eager_model, cuda, precision), _step(CudaGraphStep, graph_model, cuda, precision)
    graph = None
    for i, (x, y) in enumerate(_batches(cuda)):
        lr = 0.05 / (i + 1)
        eager.set_lr(lr)
        graphed.set_lr(lr)
        torch.cuda.manual_seed(10 + i)
        loss_e, _ = eager(x, y)
        torch.cuda.manual_seed(10 + i)
        loss_g, _ = graphed(x, y)
        graph = graph or graphed.graph
        assert graphed.graph is graph, "an LR change forced a re-capture"
        assert abs(float(loss_e) - float(loss_g)) <= 0.05 * max(1.0, abs(float(loss_e))), (i, loss_e, loss_g)
        if i == 0:
            for (name, a), b in zip(eager_model.state_dict().items(), graph_model.state_dict().values()):
                if a.is_floating_point():
                    assert torch.allclose(a.float(), b.float(), atol=1e-3, rtol=1e-2), name


def test_graph_step_keeps_pruned_weights_at_zero(cuda):
    model = _model(cuda)
    g = torch.Generator().manual_seed(1)
    mask = {n: (torch.rand(p.shape, generator=g) > 0.8).float().to(cuda)
            for n, p in model.named_parameters() if p.ndim > 1}
    step = _step(CudaGraphStep, model, cuda, "bf16", mask=mask)
    for x, y in _batches(cuda):
        step(x, y)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert torch.all(params[name][m == 0] == 0), name
        assert torch.any(params[name][m == 1] != 0), name


def test_graph_training_matches_eager_and_resumes(cuda, data, tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=64, schedule="constant", eval_n=128, eval_steps=5,
                      precision="bf16")
    attack = AttackConfig(attack="pgd", attack_steps=5)
    runs = {}
    for graphs in (False, True):
        torch.manual_seed(0)
        runs[graphs] = train(build_model("cnn6", 0.5, CIFAR10), data, cfg.replace(cuda_graphs=graphs), attack, cuda)
    assert runs[True].settings["cuda_graphs"] and not runs[False].settings["cuda_graphs"]
    for e, g in zip(runs[False].history, runs[True].history):
        assert abs(e["loss"] - g["loss"]) < 0.05 * max(1.0, e["loss"]), (e, g)
        assert abs(e["eval_clean"] - g["eval_clean"]) < 0.08, (e, g)

    # Stopped after 2 epochs, resumed to 3 (a new capture): the curve of the uninterrupted graph run, within
    # tolerance, since some CUDA kernels are not bitwise deterministic.
    run = RunDir(tmp_path / "r")
    torch.manual_seed(0)
    train(build_model("cnn6", 0.5, CIFAR10), data, cfg.replace(epochs=2, cuda_graphs=True), attack, cuda, run=run)
    torch.manual_seed(123)  # resume must not depend on the caller's RNG
    resumed = train(build_model("cnn6", 0.5, CIFAR10), data, cfg.replace(cuda_graphs=True), attack, cuda, run=run)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(runs[True].history, resumed.history):
        assert abs(a["loss"] - b["loss"]) < 0.05 * max(1.0, a["loss"]), (a, b)
